"""The admin API: products and customers (admin token only)."""

from __future__ import annotations

import secrets

from checkout_server.handlers.account import email_taken_error, profile_json
from checkout_server.plugin.api_docs import PATH_ID, api_operation
from checkout_server.plugin.web import APIError, BaseHandler, hash_token
from checkout_server.response_schemas import (
    CustomerCreatedAnswer,
    ErrorAnswer,
    ProductAnswer,
)
from checkout_server.schemas import (
    CustomerCreateSchema,
    ProductCreateSchema,
    ProductPatchSchema,
)

# Attempts at setting an absolute stock while checkouts keep changing it.
STOCK_SET_ATTEMPTS = 20


def new_customer_token() -> str:
    return secrets.token_urlsafe(32)


def product_json(product: dict, currency: str) -> dict:
    holds = product.get("holds") or {}
    return {
        "id": product["_id"],
        "name": product["name"],
        "price": product["price"],
        "currency": currency,
        "stock": product["stock"],
        # Units ever put into stock, and units held by orders not yet released or sold.
        "received": product.get("received", product["stock"]),
        "held": sum(holds.values()),
        "digital": bool(product.get("digital", False)),
        "weight": product.get("weight", 0),
        "active": bool(product.get("active", True)),
    }


class ProductsHandler(BaseHandler):
    auth = "admin"

    @api_operation("Create a product", body=ProductCreateSchema, answers={201: ProductAnswer})
    async def post(self):
        fields = self.json_body(ProductCreateSchema())
        product = await self.storage.products.create(fields)
        self.send(product_json(product, self.methods.site.currency), status=201)


class ProductHandler(BaseHandler):
    auth = "admin"

    @api_operation("A product, with its stock", answers={200: ProductAnswer},
                   path={"product_id": PATH_ID})
    async def get(self, product_id: str):
        product = await self._product(product_id)
        self.send(product_json(product, self.methods.site.currency))

    @api_operation("Change any product field; `stock` sets the on-hand count", body=ProductPatchSchema,
                   answers={200: ProductAnswer, 409: ErrorAnswer},
                   path={"product_id": PATH_ID})
    async def patch(self, product_id: str):
        product = await self._product(product_id)
        changes = self.json_body(ProductPatchSchema())
        stock = changes.pop("stock", None)
        if changes:
            product = await self.storage.products.update(product["_id"], changes)
        if stock is not None:
            product = await self._set_stock(product, stock)
        self.send(product_json(product, self.methods.site.currency))

    async def _set_stock(self, product: dict, target: int) -> dict:
        """Book the difference as a restock or write-off, so `received` stays a ledger."""
        for _attempt in range(STOCK_SET_ATTEMPTS):
            delta = target - product["stock"]
            if delta == 0:
                return product
            updated = await self.storage.products.adjust_stock(
                product["_id"], delta, expect_stock=product["stock"])
            if updated is not None:
                return updated
            # A checkout changed the stock meanwhile: look again.
            product = await self.storage.products.get(product["_id"])
        raise APIError(409, "the stock kept changing; try again")

    async def _product(self, product_id: str) -> dict:
        product = await self.storage.products.get(self.int_argument(product_id, "product"))
        if product is None:
            raise APIError(404, "product not found")
        return product


class CustomersHandler(BaseHandler):
    auth = "admin"

    @api_operation("Create a customer; its token is shown this once", body=CustomerCreateSchema,
                   answers={201: CustomerCreatedAnswer})
    async def post(self):
        profile = self.json_body(CustomerCreateSchema())
        if profile.get("email") and await self.storage.customers.email_taken(profile["email"]):
            raise email_taken_error()
        token = new_customer_token()
        customer = await self.storage.customers.create(hash_token(token), profile)
        # The only time the raw token is ever shown: only its hash is stored.
        self.send({"token": token, **profile_json(customer)}, status=201)


default_handlers = [
    (r"/api/admin/products", ProductsHandler),
    (r"/api/admin/products/([^/]+)", ProductHandler),
    (r"/api/admin/customers", CustomersHandler),
]
