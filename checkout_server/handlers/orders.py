"""Orders: the customer's own (list and detail) and the admin's view of any order."""

from __future__ import annotations

from checkout_server.handlers.paging import PagedHandler, query_error
from checkout_server.payments import cancel, refunds
from checkout_server.payments.refunds import ActionError
from checkout_server.plugin.api_docs import api_operation
from checkout_server.plugin.web import APIError, BaseHandler
from checkout_server.response_schemas import AdminOrderAnswer, ErrorAnswer, OrderAnswer
from checkout_server.schemas import (
    AdminOrdersQuery,
    OrderCancelSchema,
    OrderRefundSchema,
    OrdersQuery,
)
from checkout_server.storage.models import Order, OrderStatus

PUBLIC_FIELDS = ("status", "items", "subtotal", "shipping_cost", "total", "currency", "payment_method",
                 "shipping_method", "address", "billing", "notes", "created_at", "updated_at")


def order_json(order: Order) -> dict:
    """An order as its customer sees it."""
    doc = order.to_document()
    out = {"order_key": order.key, **{name: doc.get(name) for name in PUBLIC_FIELDS}}
    if order.status == OrderStatus.HOLD:
        out["hold_until"] = order.hold_until
        if order.payment.next_step:
            out["next_step"] = order.payment.next_step
    out["history"] = [{"status": h.get("status"), "at": h.get("at"), "reason": h.get("reason")}
                      for h in order.history]
    return out


def admin_order_json(order: Order) -> dict:
    """Everything an admin may need: the customer, the stock state and the payment record."""
    out = order_json(order)
    out.update(customer=order.customer, stock=str(order.stock), payment=order.payment.to_document(),
               shipping=dict(order.shipping), hold_until=order.hold_until, events=list(order.events),
               refunds=refunds.totals(order).as_json())
    # Who moved the order (a shopper's return, a notification, hold expiry, an admin).
    out["history"] = [{**entry, "by": h.get("by")} for entry, h in zip(out["history"], order.history)]
    return out


class OrdersHandler(PagedHandler):
    """The customer's orders, newest first, a page at a time: a shorter page is the last."""

    auth = "customer"

    @api_operation("The customer's orders, newest first", query=OrdersQuery,
                   answers={200: OrderAnswer(many=True)})
    async def get(self):
        limit, skip = self.page()
        orders = await self.storage.orders.list_for_customer(self.customer["_id"], limit=limit, skip=skip)
        self.send([order_json(order) for order in orders])


class OrderHandler(BaseHandler):
    auth = "customer"

    @api_operation("One of the customer's orders", answers={200: OrderAnswer})
    async def get(self, order_key: str):
        order = await self.storage.orders.get_for_customer(order_key, self.customer["_id"])
        if order is None:  # another customer's order answers exactly like a missing one
            raise APIError(404, "order not found")
        self.send(order_json(order))


STATUSES = tuple(status.value for status in OrderStatus)
BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
ADMIN_FILTERS = ("status", "customer", "refund_needed", "limit", "skip")


class AdminOrdersHandler(PagedHandler):
    """Every customer's orders, newest first, a page at a time, filtered by the query."""

    auth = "admin"

    @api_operation("Every customer's orders, newest first, filtered by status, customer or refund_needed",
                   query=AdminOrdersQuery, answers={200: AdminOrderAnswer(many=True)})
    async def get(self):
        self.refuse_unknown_arguments(ADMIN_FILTERS)
        status = self.one_argument("status", f"one of {', '.join(STATUSES)}")
        if status is not None and status not in STATUSES:
            raise query_error("status", f"must be one of {', '.join(STATUSES)}, given once")
        customer = self.one_argument("customer", "a customer id")
        if customer is not None:
            customer = self.count_argument("customer", 0, 1, 10**15 - 1, digits=15)
        refund_needed = self.one_argument("refund_needed", "true or false")
        if refund_needed is not None:
            if refund_needed not in BOOLEANS:
                raise query_error("refund_needed", "must be true or false, given once")
            refund_needed = BOOLEANS[refund_needed]
        limit, skip = self.page()
        orders = await self.storage.orders.list_for_admin(status=status, customer=customer,
                                                          refund_needed=refund_needed, limit=limit, skip=skip)
        self.send([admin_order_json(order) for order in orders])


class AdminOrderHandler(BaseHandler):
    auth = "admin"

    @api_operation("Any order, with its customer, stock state and payment record",
                   answers={200: AdminOrderAnswer})
    async def get(self, order_key: str):
        order = await self.storage.orders.get(order_key)
        if order is None:
            raise APIError(404, "order not found")
        self.send(admin_order_json(order))


class _AdminActionHandler(BaseHandler):
    auth = "admin"

    def body(self, schema) -> dict:
        if not (self.request.body or b"").strip():
            return schema.load({})  # no body: every field's default
        return self.json_body(schema)

    async def act(self, action, order_key: str, **kwargs) -> None:
        try:
            order = await action(self.storage, self.methods, order_key, **kwargs)
        except ActionError as exc:
            raise APIError(exc.status, exc.message, exc.fields) from None
        self.send(admin_order_json(order))


class AdminOrderCancelHandler(_AdminActionHandler):
    """Cancel an order: ask the gateway (HOLD), refund and take the units back (PROCESSING)."""

    @api_operation("Cancel an order: asks the gateway (HOLD), refunds and takes the units back (PROCESSING)",
                   body=OrderCancelSchema, body_required=False, answers={200: AdminOrderAnswer, 409: ErrorAnswer, 503: ErrorAnswer})
    async def post(self, order_key: str):
        body = self.body(OrderCancelSchema())
        await self.act(cancel.cancel, order_key, reason=body["reason"], restock=body["restock"],
                       refund=body["refund"])


class AdminOrderRefundHandler(_AdminActionHandler):
    """Refund part or all of an order's payment, through its provider or recorded by hand."""

    @api_operation("Refund part or all of an order's payment, through its provider or recorded by hand",
                   body=OrderRefundSchema, body_required=False, answers={200: AdminOrderAnswer, 409: ErrorAnswer, 503: ErrorAnswer})
    async def post(self, order_key: str):
        body = self.body(OrderRefundSchema())
        await self.act(refunds.refund, order_key, amount=body["amount"], manual=body["manual"],
                       note=body["note"], reason=body["reason"])


default_handlers = [
    (r"/api/shop/orders", OrdersHandler),
    (r"/api/shop/orders/([^/]+)", OrderHandler),
    (r"/api/admin/orders", AdminOrdersHandler),
    (r"/api/admin/orders/([^/]+)", AdminOrderHandler),
    (r"/api/admin/orders/([^/]+)/cancel", AdminOrderCancelHandler),
    (r"/api/admin/orders/([^/]+)/refund", AdminOrderRefundHandler),
]
