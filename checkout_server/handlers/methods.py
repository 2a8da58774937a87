"""Which payment and shipping methods a shopper can choose, and the admin's plugin report."""

from __future__ import annotations

from checkout_server.checkout.cart import load_cart, to_address
from checkout_server.methods.availability import payment_support, shipping_offer
from checkout_server.plugin.api_docs import api_operation
from checkout_server.plugin.manager import get_plugins
from checkout_server.plugin.providers import Support
from checkout_server.plugin.web import APIError, BaseHandler
from checkout_server.response_schemas import (
    CheckoutMethodsAnswer,
    ErrorAnswer,
    PluginsAnswer,
)
from checkout_server.schemas import CheckoutMethodsQuery

_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no", ""}


class CheckoutMethodsHandler(BaseHandler):
    """GET /api/shop/checkout/methods?address={id}[&include_unavailable=1]"""

    auth = "customer"

    @api_operation("The payment and shipping methods this cart (and address) can use",
                   query=CheckoutMethodsQuery, answers={200: CheckoutMethodsAnswer, 404: ErrorAnswer})
    async def get(self):
        address_id = self._address_argument()
        include_unavailable = self._flag_argument("include_unavailable")
        # One table for the whole answer, even if a reload swaps it meanwhile.
        table = self.methods
        stored = (self.customer.get("addresses") or {}).get(str(address_id))
        if stored is None:
            raise APIError(404, "address not found")
        address = to_address(stored)
        loaded = await load_cart(self.storage, self.customer, table.site.currency)
        cart = loaded.cart
        empty = Support.no("your cart is empty") if not cart.lines else None

        payment_methods = []
        for method in table.payment.values():
            if not method.active:
                continue
            support = empty if empty is not None else payment_support(method, cart)
            entry = {"id": method.id, "title": method.title, "flow": method.provider.flow}
            if support:
                payment_methods.append({**entry, "available": True} if include_unavailable else entry)
            elif include_unavailable:
                payment_methods.append({**entry, "available": False, "reason": support.reason})

        shipping_methods = []
        for method in table.shipping.values():
            if not method.active:
                continue
            support, cost = (empty, None) if empty is not None else shipping_offer(method, cart, address)
            entry = {"id": method.id, "title": method.title, "cost": cost}
            if support:
                shipping_methods.append({**entry, "available": True} if include_unavailable else entry)
            elif include_unavailable:
                shipping_methods.append({**entry, "available": False, "reason": support.reason})

        self.send({
            "payment_methods": payment_methods,
            "shipping_methods": shipping_methods,
            "currency": table.site.currency,
        })

    def _single_argument(self, name: str) -> str | None:
        values = self.get_query_arguments(name)
        if len(values) > 1:
            raise APIError(400, f"invalid query: {name}: give it once",
                           {name: ["Give this parameter once."]})
        return values[0] if values else None

    def _address_argument(self) -> int:
        raw = self._single_argument("address")
        if raw is None:
            raise APIError(400, "invalid query: address: the address id is required",
                           {"address": ["Missing data for required field."]})
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 18 or int(raw) < 1:
            raise APIError(400, "invalid query: address: must be a positive integer",
                           {"address": ["Not a valid integer."]})
        return int(raw)

    def _flag_argument(self, name: str) -> bool:
        raw = self._single_argument(name)
        if raw is None:
            return False
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise APIError(400, f"invalid query: {name}: must be 1 or 0", {name: ["Must be 1 or 0."]})


class AdminPluginsHandler(BaseHandler):
    """GET /api/admin/plugins: loaded plugins with their providers, and the configured methods."""

    auth = "admin"

    @api_operation("Loaded plugins with their providers, and the configured methods",
                   answers={200: PluginsAnswer})
    async def get(self):
        table = self.methods
        self.send({
            "plugins": get_plugins(self.settings["plugin_manager"]),
            "methods": table.describe(),
            "config": table.config.path,
        })


default_handlers = [
    (r"/api/shop/checkout/methods", CheckoutMethodsHandler),
    (r"/api/admin/plugins", AdminPluginsHandler),
]
