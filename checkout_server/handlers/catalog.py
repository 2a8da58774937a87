"""The catalog a shopper browses: products for sale, with a stock state instead of counts."""

from __future__ import annotations

from checkout_server.handlers.paging import DEFAULT_PAGE, MAX_PAGE, PagedHandler
from checkout_server.plugin.api_docs import api_operation
from checkout_server.response_schemas import CatalogAnswer
from checkout_server.schemas import CatalogQuery

# GET /api/shop/products pages by id: `?limit=` products with ids above `?after=`.
MAX_ID = 10**15 - 1
# At or below this many units a product shows as "low_stock".
LOW_STOCK = 5


def stock_state(stock: int) -> str:
    """What a shopper is told about stock: the exact count is the shop's business."""
    if stock <= 0:
        return "out_of_stock"
    return "low_stock" if stock <= LOW_STOCK else "in_stock"


def product_json(product: dict) -> dict:
    return {"id": product["_id"], "name": product["name"], "price": product["price"],
            "digital": bool(product.get("digital")), "stock_state": stock_state(int(product.get("stock", 0)))}


class ProductsHandler(PagedHandler):
    """Products for sale by id, a page at a time: a shorter page is the last."""

    auth = "customer"

    @api_operation("Products for sale, by id, with a stock state", query=CatalogQuery,
                   answers={200: CatalogAnswer})
    async def get(self):
        limit = self.count_argument("limit", DEFAULT_PAGE, 1, MAX_PAGE)
        after = self.count_argument("after", 0, 0, MAX_ID, digits=15)
        products = await self.storage.products.for_sale(after, limit)
        self.send({"products": [product_json(p) for p in products], "currency": self.methods.site.currency})


default_handlers = [(r"/api/shop/products", ProductsHandler)]
