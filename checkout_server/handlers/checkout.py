"""Checkout: POST /api/shop/checkout/cart, and the gateway's return and notifications."""

from __future__ import annotations

import logging
from urllib.parse import quote

from checkout_server.checkout.answers import CheckoutError
from checkout_server.checkout.flow import checkout_cart
from checkout_server.checkout.lock import lock_customer_by_token
from checkout_server.payments import refunds
from checkout_server.payments.return_tokens import return_token_matches
from checkout_server.payments.settlement import (
    PENDING,
    method_for,
    no_method_reason,
    order_info,
    result_of,
    settle,
)
from checkout_server.plugin.providers import GatewayError, NotificationError
from checkout_server.plugin.web import APIError, BaseHandler
from checkout_server.schemas import CheckoutSchema
from checkout_server.storage.models import OrderStatus, StockState

log = logging.getLogger(__name__)

# Built once: a marshmallow schema deep-copies its declared fields on every instantiation,
# and loading keeps no state on the instance.
CHECKOUT_SCHEMA = CheckoutSchema()


class CheckoutCartHandler(BaseHandler):
    """The checkout. Its customer read also takes the checkout lock: one round trip for both.

    The answers keep their order (401, then 400 for the body, then 409 for a running
    checkout): a body is validated before the lock is tried, and a request whose lock is
    busy is answered by `checkout_cart`, which tries the lock again and says 409.
    """

    auth = "customer"

    def initialize(self, **kwargs):
        super().initialize(**kwargs)
        self.locked = False
        self.checkout_request: dict | None = None

    async def find_customer(self, token_hash: str) -> dict | None:
        try:
            self.checkout_request = self.json_body(CHECKOUT_SCHEMA)
        except APIError:  # post() answers 400, after the 401 check
            return await super().find_customer(token_hash)
        if self.request.headers.get("Idempotency-Key") is not None:
            return await super().find_customer(token_hash)  # the key is claimed before the lock
        customer = await lock_customer_by_token(self.storage, token_hash)
        if customer is None:  # unknown token (401) or a checkout running (409 from post)
            return await super().find_customer(token_hash)
        self.locked = True
        return customer

    async def post(self):
        request = self.checkout_request or self.json_body(CHECKOUT_SCHEMA)
        key = self.request.headers.get("Idempotency-Key")
        # A repeated key is compared with the body as sent, not as validation cleaned it.
        sent = self.json_body() if key is not None else None
        try:
            status, body = await checkout_cart(self.storage, self.methods, self.customer, request, key,
                                               locked=self.locked, sent=sent)
        except CheckoutError as exc:
            raise APIError(exc.status, exc.message, exc.fields) from None
        self.send(body, status)


class _PaymentMethodHandler(BaseHandler):
    """Shared by the return and notify endpoints: the method from the path."""

    auth = "public"

    def payment_method(self, table, method_id: str):
        method = table.payment.get(self.int_argument(method_id, "payment method"))
        if method is None:
            raise APIError(404, "payment method not found")
        return method


class PaymentReturnHandler(_PaymentMethodHandler):
    """The shopper's browser, back from the gateway: verify with the gateway, settle, 302."""

    async def get(self, method_id: str):
        table = self.methods
        method_number = self.int_argument(method_id, "payment method")
        order_key = self.get_query_argument("order", "")
        order = await self.storage.orders.get(order_key) if order_key else None
        # The order's return token (`rt`, only in the URL the gateway was given) before
        # anything else: order keys are sequential, and without it a request is answered as
        # for an unknown order, verifies nothing and settles nothing.
        if (order is None or order.stock == StockState.RESERVING
                or not return_token_matches(order, self.get_query_argument("rt", ""))):
            raise APIError(404, "order not found")
        if order.payment_method != method_number:
            if method_number not in table.payment:
                raise APIError(404, "payment method not found")
            raise APIError(400, f"order {order_key} was not paid with payment method {method_number}")
        method = method_for(table, order)
        if method is None:
            # Removed from the config since the checkout, or its id given to another provider:
            # nobody can verify the payment here. The shopper still lands on the site; the
            # order waits on HOLD (the sweeper too).
            log.error("order %s: %s; the return cannot be verified, the order stays as it is",
                      order_key, no_method_reason(table, order))
            self.redirect_to_site(order.key, result_of(order))
            return
        result = result_of(order)
        if order.status == OrderStatus.HOLD:
            params = {name: self.get_query_argument(name) for name in self.request.query_arguments}
            check = None
            try:
                check = await method.provider.verify_return(order_info(order), params)
            except GatewayError as exc:
                # Not decided: the order stays on HOLD for a notification or the expiry sweep.
                log.warning("order %s: could not verify the return with the gateway: %s", order_key, exc)
            except Exception:
                log.exception("order %s: payment method %s failed to verify the return", order_key, method.id)
            result = (await settle(self.storage, table, order, check, by="shopper's return")).result if check else PENDING
        self.redirect_to_site(order.key, result)

    def redirect_to_site(self, order_key: str, result: str) -> None:
        url = (self.methods.site.return_url
               .replace("{order_key}", quote(order_key, safe=""))
               .replace("{result}", result))
        self.set_status(302)
        self.set_header("Location", url)
        self.finish()


class PaymentNotifyHandler(_PaymentMethodHandler):
    """Server-to-server notification (webhook): verified by the provider, then settled."""

    async def post(self, method_id: str):
        table = self.methods
        method = self.payment_method(table, method_id)
        try:
            notification = await method.provider.parse_notification(dict(self.request.headers),
                                                                    self.request.body or b"")
        except NotificationError as exc:
            raise APIError(400, f"notification refused: {exc}") from None
        except GatewayError as exc:
            raise APIError(503, f"the payment service is unavailable: {exc}") from None
        if notification.order_key is None:
            self.send({"status": "ignored"})
            return
        order = await self.storage.orders.get(notification.order_key)
        if order is None or order.stock == StockState.RESERVING:
            # Not ours yet (or at all): a gateway retries on an error answer.
            raise APIError(404, "order not found")
        if order.payment_method != method.id:
            raise APIError(400, f"order {order.key} was not paid with payment method {method.id}")
        if method_for(table, order) is not method:
            # The id now names another provider (a reload): its reading of this notification
            # says nothing about the payment the order's own provider took. Answered as for a
            # removed method, so the gateway retries until the method is configured again.
            log.error("order %s: %s; a notification to method %s cannot settle it",
                      order.key, no_method_reason(table, order), method.id)
            raise APIError(404, "payment method not found")
        if notification.event_id and str(notification.event_id) in order.events:
            self.send({"status": "duplicate", "order_key": order.key, "result": result_of(order)})
            return
        stored = order.payment.reference
        if notification.reference and stored and notification.reference != stored:
            # Another payment naming this order key (one from before a database reset or
            # restore, its deliveries still retried): it says nothing about this order's.
            log.warning("order %s: ignored a notification about payment %s, not the order's %s",
                        order.key, notification.reference, stored)
            self.send({"status": "ignored", "order_key": order.key, "result": result_of(order)})
            return
        if notification.refunds:
            try:
                order = await refunds.record_gateway_refunds(self.storage, order, notification.refunds)
            except refunds.RefundNotYetRecorded as exc:
                raise APIError(409, exc.message) from None  # the gateway delivers it again
        check = notification.check
        # Only an order still on HOLD may have its payment decided (check() may capture it).
        if check is None and order.status == OrderStatus.HOLD:
            try:
                check = await method.provider.check(order_info(order))
            except GatewayError as exc:
                raise APIError(503, f"the payment service is unavailable: {exc}") from None
        outcome = await settle(self.storage, table, order, check, by="gateway notification") if check is not None else None
        if notification.event_id:
            await self.storage.orders.add_event(order.key, notification.event_id)
        self.send({"status": "ok", "order_key": order.key,
                   "result": outcome.result if outcome else result_of(order)})


default_handlers = [
    (r"/api/shop/checkout/cart", CheckoutCartHandler),
    (r"/api/shop/checkout/return/([^/]+)", PaymentReturnHandler),
    (r"/api/shop/checkout/notify/([^/]+)", PaymentNotifyHandler),
]
