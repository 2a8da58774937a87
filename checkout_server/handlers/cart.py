"""The shopper's cart: quantities stored on the customer, priced from the catalog."""

from __future__ import annotations

from checkout_server.checkout.cart import cart_json, load_cart
from checkout_server.plugin.api_docs import PATH_ID, api_operation
from checkout_server.plugin.web import APIError, BaseHandler
from checkout_server.response_schemas import CartAnswer, ErrorAnswer
from checkout_server.schemas import (
    MAX_QUANTITY_PER_LINE,
    CartItemSchema,
    CartQuantitySchema,
)

# A cart is part of the customer document: keep it small.
MAX_CART_LINES = 100


class CartBase(BaseHandler):
    auth = "customer"

    async def send_cart(self, customer: dict) -> None:
        loaded = await load_cart(self.storage, customer, self.methods.site.currency)
        body = cart_json(loaded.cart)
        if loaded.unavailable:
            # Lines whose product was removed or deactivated: not priced, not orderable.
            body["unavailable"] = loaded.unavailable
        self.send(body)

    async def available_product(self, product_id: int, field: str | None = "product") -> dict:
        product = await self.storage.products.get(product_id)
        if product is None or not product.get("active", True):
            message = f"product {product_id} does not exist or is not for sale"
            raise APIError(400, message, {field: [message]} if field else None)
        return product

    def check_line_count(self, product_id: int) -> None:
        # Lines at zero or below (left by an interrupted clean-up) are not in the cart.
        lines = {p for p, q in (self.customer.get("cart") or {}).items() if q > 0}
        if str(product_id) not in lines and len(lines) >= MAX_CART_LINES:
            raise APIError(400, f"a cart holds at most {MAX_CART_LINES} different products")


class CartHandler(CartBase):
    @api_operation("The cart, priced from the catalog", answers={200: CartAnswer})
    async def get(self):
        await self.send_cart(self.customer)


class CartItemsHandler(CartBase):
    @api_operation("Add a quantity of a product (to its line, if there is one)", body=CartItemSchema,
                   answers={200: CartAnswer})
    async def post(self):
        item = self.json_body(CartItemSchema())
        product_id, quantity = item["product"], item["quantity"]
        await self.available_product(product_id)
        self.check_line_count(product_id)
        customer = await self.storage.customers.add_to_cart(
            self.customer["_id"], product_id, quantity, max_quantity=MAX_QUANTITY_PER_LINE)
        if customer is None:
            message = f"a cart line holds at most {MAX_QUANTITY_PER_LINE} units"
            raise APIError(400, message, {"quantity": [message]})
        await self.send_cart(customer)


class CartItemHandler(CartBase):
    @api_operation("Set a line's quantity (0 removes it)", body=CartQuantitySchema, answers={200: CartAnswer, 400: ErrorAnswer},
                   path={"product_id": PATH_ID})
    async def put(self, product_id: str):
        product_id = self._product_id(product_id)
        quantity = self.json_body(CartQuantitySchema())["quantity"]
        if quantity > 0:
            await self.available_product(product_id, field=None)
            self.check_line_count(product_id)
        customer = await self.storage.customers.set_cart_quantity(self.customer["_id"], product_id, quantity)
        await self.send_cart(customer)

    @api_operation("Remove a line", answers={200: CartAnswer, 400: ErrorAnswer}, path={"product_id": PATH_ID})
    async def delete(self, product_id: str):
        product_id = self._product_id(product_id)
        customer = await self.storage.customers.set_cart_quantity(self.customer["_id"], product_id, 0)
        await self.send_cart(customer)

    def _product_id(self, value: str) -> int:
        if not (value.isascii() and value.isdigit()) or len(value) > 15 or int(value) < 1:
            message = f"{value[:40]!r} is not a product id"
            raise APIError(400, f"product: {message}", {"product": [message]})
        return int(value)


default_handlers = [
    (r"/api/shop/cart", CartHandler),
    (r"/api/shop/cart/items", CartItemsHandler),
    (r"/api/shop/cart/items/([^/]+)", CartItemHandler),
]
