"""Orders: the customer's own (list and detail) and the admin's view of any order."""

from __future__ import annotations

from checkout_server.plugin.web import APIError, BaseHandler

PUBLIC_FIELDS = ("status", "items", "subtotal", "shipping_cost", "total", "currency", "payment_method",
                 "shipping_method", "address", "billing", "notes", "created_at", "updated_at")


def order_json(order: dict) -> dict:
    """An order as its customer sees it."""
    out = {"order_key": order["_id"], **{name: order.get(name) for name in PUBLIC_FIELDS}}
    payment = order.get("payment") or {}
    if order.get("status") == "HOLD":
        out["hold_until"] = order.get("hold_until")
        if payment.get("next_step"):
            out["next_step"] = payment["next_step"]
    out["history"] = [{"status": h.get("status"), "at": h.get("at"), "reason": h.get("reason")}
                      for h in order.get("history") or []]
    return out


def admin_order_json(order: dict) -> dict:
    """Everything an admin may need: the customer, the stock state and the payment record."""
    out = order_json(order)
    out.update(customer=order.get("customer"), stock=order.get("stock"), payment=order.get("payment"),
               shipping=order.get("shipping"), hold_until=order.get("hold_until"),
               events=order.get("events") or [])
    return out


# GET /api/shop/orders pages: `?limit=` orders (default, at most) from `?skip=` on.
DEFAULT_PAGE, MAX_PAGE, MAX_SKIP = 50, 100, 1_000_000


class OrdersHandler(BaseHandler):
    """The customer's orders, newest first, a page at a time: a shorter page is the last."""

    auth = "customer"

    async def get(self):
        limit = self._count_argument("limit", DEFAULT_PAGE, 1, MAX_PAGE)
        skip = self._count_argument("skip", 0, 0, MAX_SKIP)
        orders = await self.storage.orders.list_for_customer(self.customer["_id"], limit=limit, skip=skip)
        self.send([order_json(order) for order in orders])

    def _count_argument(self, name: str, default: int, low: int, high: int) -> int:
        values = self.get_query_arguments(name)
        if not values:
            return default
        raw = values[0]
        in_range = raw.isascii() and raw.isdigit() and len(raw) <= 7 and low <= int(raw) <= high
        if len(values) > 1 or not in_range:
            message = f"must be an integer from {low} to {high}, given once"
            raise APIError(400, f"invalid query: {name}: {message}", {name: [message.capitalize() + "."]})
        return int(raw)


class OrderHandler(BaseHandler):
    auth = "customer"

    async def get(self, order_key: str):
        order = await self.storage.orders.get_for_customer(order_key, self.customer["_id"])
        if order is None:  # another customer's order answers exactly like a missing one
            raise APIError(404, "order not found")
        self.send(order_json(order))


class AdminOrderHandler(BaseHandler):
    auth = "admin"

    async def get(self, order_key: str):
        order = await self.storage.orders.get(order_key)
        if order is None:
            raise APIError(404, "order not found")
        self.send(admin_order_json(order))


default_handlers = [
    (r"/api/shop/orders", OrdersHandler),
    (r"/api/shop/orders/([^/]+)", OrderHandler),
    (r"/api/admin/orders/([^/]+)", AdminOrderHandler),
]
