"""Checkout: POST /api/shop/checkout/cart, and the gateway's return and notifications.

HTTP only: each handler parses its request, makes one domain call (`checkout.flow`,
`payments.callbacks`) and answers. The return and notify routes are named: the URLs handed
to gateways are built from this table (`reverse_url`), nowhere else.
"""

from __future__ import annotations

from urllib.parse import quote

from checkout_server.checkout.answers import CheckoutError
from checkout_server.checkout.flow import checkout_cart
from checkout_server.checkout.lock import lock_customer_by_token
from checkout_server.checkout.rules import RULE_FIELDS
from checkout_server.observability import logs, metrics
from checkout_server.payments.callbacks import (
    CallbackError,
    settle_notification,
    settle_return,
)
from checkout_server.payments.return_tokens import NOTIFY_ROUTE, RETURN_ROUTE
from checkout_server.plugin.api_docs import PATH_ID, api_operation
from checkout_server.plugin.web import APIError, BaseHandler
from checkout_server.response_schemas import (
    CheckoutAnswer,
    ErrorAnswer,
    NotificationAnswer,
)
from checkout_server.schemas import CheckoutSchema, PaymentReturnQuery

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

    @api_operation(
        "Check out the cart: create the order and start its payment",
        description="Answers `next_step` (redirect payments: send the shopper there) or `order_key` "
                    "(direct payments). A 400 reports every failing rule at once in `fields` "
                    "(cart, profile, address, payment_method, shipping_method).",
        body=CheckoutSchema, answers={200: CheckoutAnswer, 409: ErrorAnswer, 503: ErrorAnswer},
        parameters=({"in": "header", "name": "Idempotency-Key", "required": False,
                     "description": "A repeat with the same key and body answers as the first did (24 hours); "
                                    "the same key with another body is 400; while the first runs, 409.",
                     "schema": {"type": "string", "minLength": 1, "maxLength": 255}},))
    async def post(self):
        table = self.methods
        outcome, request = "500", self.checkout_request
        try:
            request = request or self.json_body(CHECKOUT_SCHEMA)
            key = self.request.headers.get("Idempotency-Key")
            # A repeated key is compared with the body as sent, not as validation cleaned it.
            sent = self.json_body() if key is not None else None
            status, body = await checkout_cart(self.storage, table, self.customer, request, key,
                                               locked=self.locked, sent=sent, reverse_url=self.reverse_url)
            outcome = "next_step" if "next_step" in body else "order" if "order_key" in body else str(status)
            if "order_key" in body:
                logs.bind(order_key=body["order_key"])
        except CheckoutError as exc:
            outcome = _error_outcome(exc.status, exc.fields)
            raise APIError(exc.status, exc.message, exc.fields) from None
        except APIError as exc:
            outcome = _error_outcome(exc.status_code, exc.fields)
            raise
        finally:
            method = table.payment.get((request or {}).get("payment_method"))
            metrics.checkout_finished(outcome, str(method.id) if method else "unknown",
                                      method.provider.flow if method else "unknown")
        self.send(body, status)


def _error_outcome(status: int, fields: dict | None) -> str:
    """A failed checkout's outcome label; a 400 on the seed page's rules counts each rule."""
    if status == 400 and fields and set(fields) <= set(RULE_FIELDS):
        metrics.checkout_refused(fields)
        return "refused"
    return "invalid" if status == 400 else str(status)


class PaymentReturnHandler(BaseHandler):
    """The shopper's browser, back from the gateway: `settle_return`, then a 302 to the site."""

    auth = "public"

    @api_operation(
        "The shopper's browser back from the gateway: verified with the gateway, then sent on",
        description="The gateway adds its own query parameters. Answers 302 to the site's return_url "
                    "with the order key and the result (paid, failed or pending).",
        query=PaymentReturnQuery, answers={302: None},
        answer_headers={302: {"Location": "the site's return_url for this order and result"}},
        path={"method_id": PATH_ID})
    async def get(self, method_id: str):
        table = self.methods  # one table for the whole request
        method_number = self.int_argument(method_id, "payment method")
        params = {name: self.get_query_argument(name) for name in self.request.query_arguments}
        try:
            back = await settle_return(self.storage, table, method_number, self.get_query_argument("order", ""),
                                       self.get_query_argument("rt", ""), params)
        except CallbackError as exc:
            raise APIError(exc.status, exc.message) from None
        url_ = (table.site.return_url
                .replace("{order_key}", quote(back.order_key, safe=""))
                .replace("{result}", back.result))
        self.set_status(302)
        self.set_header("Location", url_)
        self.finish()


class PaymentNotifyHandler(BaseHandler):
    """Server-to-server notification (webhook): `settle_notification`, its answer as JSON."""

    auth = "public"

    @api_operation(
        "A gateway's server-to-server notification (webhook), checked by the payment method",
        description="The body and headers are the gateway's own (signed where it signs); 400 when the "
                    "method refuses it, 503 when the gateway cannot be asked.",
        answers={200: NotificationAnswer, 400: ErrorAnswer, 503: ErrorAnswer},
        path={"method_id": PATH_ID})
    async def post(self, method_id: str):
        method_number = self.int_argument(method_id, "payment method")
        try:
            answer = await settle_notification(self.storage, self.methods, method_number,
                                               dict(self.request.headers), self.request.body or b"")
        except CallbackError as exc:
            raise APIError(exc.status, exc.message) from None
        self.send(answer)


default_handlers = [
    (r"/api/shop/checkout/cart", CheckoutCartHandler),
    # (pattern, handler, kwargs, name): the named routes Tornado's reverse_url builds.
    (r"/api/shop/checkout/return/([^/]+)", PaymentReturnHandler, {}, RETURN_ROUTE),
    (r"/api/shop/checkout/notify/([^/]+)", PaymentNotifyHandler, {}, NOTIFY_ROUTE),
]
