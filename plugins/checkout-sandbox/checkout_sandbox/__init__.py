"""Sandbox payments: a redirect flow whose "gateway" is a test page this service serves.

For trying the redirect flow end to end without a real gateway: the shopper is sent to
`/sandbox/pay/<reference>`, sees the order and amount, and presses Pay or Cancel. The
decision is recorded server-side (storage `sandbox_payments`), and the provider verifies a
return by asking the sandbox "gateway" over HTTP, as a real provider asks its gateway;
the query string of the return is never trusted. It refunds too: once per refund attempt,
never more than was paid. The pages exist only while a sandbox method is configured. Never configure one in production: anyone can "pay" there.
"""

from __future__ import annotations

import hmac
import json
import re

import tornado.web
from tornado.escape import xhtml_escape

from checkout_server.payments.return_tokens import return_token_matches
from checkout_server.plugin import (
    GatewayClient,
    GatewayError,
    PaymentCheck,
    PaymentProvider,
    PaymentStart,
    PaymentState,
    Refund,
    RefundRequest,
    RefundState,
    hookimpl,
)

RETURN_PATH = "/api/shop/checkout/return/"
TIMEOUT = 10.0
# POST /sandbox/api/payments: the provider's own call is a few hundred bytes.
MAX_CREATE_BODY = 4 * 1024
FIELD_LIMITS = {"order_key": 64, "currency": 8, "return_url": 2048}
MAX_REFERENCE = 64  # "sbx_" + 16 characters; anything longer is no reference


class SandboxPayment(PaymentProvider):
    name = "sandbox"
    flow = "redirect"

    def __init__(self, method, settings):
        super().__init__(method, settings)
        # No fixed base URL: the gateway is this service, at the address each order was given.
        self.gateway = GatewayClient("sandbox gateway", "", timeout=TIMEOUT)

    async def startup(self) -> None:
        await self.gateway.open()

    async def close(self) -> None:
        await self.gateway.close()

    async def _call(self, method: str, url: str, body: dict | None = None) -> dict:
        await self.gateway.open()  # a provider used without startup() (a unit test) opens it here
        try:
            answer = await self.gateway.request(method, url, json=body)
        except GatewayError as exc:
            # The URL says which base_url was used: a wrong [site] base_url (another port) shows here.
            raise GatewayError(f"sandbox gateway unreachable at {url} (is [site] base_url this server?): "
                               f"{exc}") from None
        if answer.status != 200:
            raise GatewayError(f"sandbox gateway answered {answer.status}")
        return answer.body

    async def start(self, order, urls) -> PaymentStart:
        # The gateway is this service: its public address is where the return URL points.
        gateway = urls.return_url.split(RETURN_PATH, 1)[0] + "/sandbox"
        created = await self._call("POST", f"{gateway}/api/payments", {
            "order_key": order.order_key, "amount": order.total, "currency": order.currency,
            "return_url": urls.return_url})
        reference = created.get("reference")
        if not isinstance(reference, str):
            raise GatewayError("sandbox gateway answered without a reference")
        return PaymentStart(redirect_url=f"{gateway}/pay/{reference}", reference=reference,
                            data={"gateway": gateway, "reference": reference})

    async def verify_return(self, order, params) -> PaymentCheck:
        # The page sends the shopper back only after a decision; without one, keep waiting.
        return await self._decision(order, undecided=PaymentState.PENDING)

    async def check(self, order) -> PaymentCheck:
        """The recorded decision; none by now (the hold expired) means the payment is over."""
        return await self._decision(order, undecided=PaymentState.FAILED)

    async def refund(self, order, request: RefundRequest) -> Refund:
        """POST the refund to the sandbox gateway: refunded at once, once per attempt id."""
        gateway, reference = order.payment.get("gateway"), order.payment.get("reference")
        if not gateway or not reference:
            return Refund(RefundState.FAILED, request.amount, request.currency, detail="no sandbox payment was started")
        await self.gateway.open()
        answer = await self.gateway.request("POST", f"{gateway}/api/payments/{reference}/refunds",
                                            json={"attempt_id": request.attempt_id, "amount": request.amount})
        if answer.status == 400:
            return Refund(RefundState.FAILED, request.amount, request.currency,
                          detail=str(answer.body.get("error") or "refused by the sandbox"))
        if answer.status != 200 or not isinstance(answer.body.get("refund_id"), str):
            raise GatewayError(f"sandbox gateway answered {answer.status} to a refund")
        return Refund(RefundState.SUCCEEDED, request.amount, request.currency, reference=answer.body["refund_id"],
                      detail="refunded on the sandbox", attempt_id=request.attempt_id)

    async def _decision(self, order, undecided: PaymentState) -> PaymentCheck:
        gateway, reference = order.payment.get("gateway"), order.payment.get("reference")
        if not gateway or not reference:
            return PaymentCheck(PaymentState.FAILED, detail="no sandbox payment was started")
        record = await self._call("GET", f"{gateway}/api/payments/{reference}")
        state = record.get("state")
        if state == "paid":
            return PaymentCheck(PaymentState.PAID, amount=record.get("amount"), currency=record.get("currency"),
                                reference=reference, detail="paid on the sandbox page")
        if state == "cancelled":
            return PaymentCheck(PaymentState.FAILED, reference=reference, detail="cancelled on the sandbox page")
        detail = "no decision on the sandbox page" if undecided is PaymentState.FAILED else ""
        return PaymentCheck(undecided, reference=reference, detail=detail)


# -- the sandbox "gateway": pages and a tiny API, mounted through register_routes

class SandboxHandler(tornado.web.RequestHandler):
    auth = "public"  # the shopper's browser and the provider, like a real gateway's

    def prepare(self):
        table = self.settings["method_registry"].table
        if not any(m.provider.name == SandboxPayment.name for m in table.payment.values()):
            raise tornado.web.HTTPError(404)

    @property
    def payments(self):
        return self.settings["storage"].sandbox_payments

    def set_default_headers(self):
        # No other site may frame these pages (clickjacking the Pay button).
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Content-Security-Policy", "frame-ancestors 'none'")
        self.set_header("Cache-Control", "no-store")

    async def record(self, reference: str) -> dict:
        """The sandbox payment `reference`, else 404."""
        record = await self.payments.get(reference) if len(reference) <= MAX_REFERENCE else None
        if record is None:
            raise tornado.web.HTTPError(404, reason="no such sandbox payment")
        return record

    def send_json(self, data: dict, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(data))

    def write_error(self, status_code: int, **kwargs) -> None:
        self.send_json({"error": self._reason}, status_code)


def _bad(reason: str) -> tornado.web.HTTPError:
    return tornado.web.HTTPError(400, reason=reason)


class PaymentsAPI(SandboxHandler):
    """Creates the record of one payment: only for the provider's own `start`.

    The route is public (a gateway's API is), so what it stores is bounded and tied to a real
    order: one being checked out right now (HOLD, stock still "reserving") with the sandbox,
    for its exact amount and currency, returning to its own return URL, whose `rt` token only
    this service knows. Anything else is 400 and stores nothing.
    """

    async def post(self):
        if len(self.request.body or b"") > MAX_CREATE_BODY:
            raise tornado.web.HTTPError(413, reason=f"request body is larger than {MAX_CREATE_BODY} bytes")
        try:
            body = json.loads(self.request.body or b"null")
        except (ValueError, RecursionError):
            raise _bad("the request body is not valid JSON") from None
        if not isinstance(body, dict) or set(body) != {"order_key", "amount", "currency", "return_url"}:
            raise _bad("order_key, amount, currency and return_url (only) are required")
        amount = body["amount"]
        if type(amount) is not int or not 0 <= amount < 2**63:
            raise _bad("amount must be a non-negative integer in minor units")
        for field, limit in FIELD_LIMITS.items():
            value = body[field]
            # isascii: also keeps lone surrogates (valid JSON, no UTF-8) away from the database.
            if not isinstance(value, str) or not value or len(value) > limit or not value.isascii():
                raise _bad(f"{field} must be an ASCII string of at most {limit} characters")
        order_key, currency, return_url = body["order_key"], body["currency"], body["return_url"]
        order = await self.settings["storage"].orders.get(order_key)
        if (order is None or order.get("status") != "HOLD" or order.get("stock") != "reserving"
                or (order.get("payment") or {}).get("provider") != SandboxPayment.name):
            raise _bad("order_key is no order starting a sandbox payment")
        if amount != order.get("total") or currency != order.get("currency"):
            raise _bad("amount and currency must be the order's")
        # Only back to this order's own return URL: no open redirect, no one else's record.
        base = self.settings["method_registry"].table.site.base_url
        expected = f"{base}{RETURN_PATH}{order.get('payment_method')}?order={order_key}&rt="
        token = return_url[len(expected):]
        if (not return_url.startswith(expected) or not re.fullmatch(r"[\w-]+", token)
                or not return_token_matches(order, token)):
            raise _bad("return_url must be this order's return URL at this shop")
        created = await self.payments.create(order_key, amount, currency, return_url)
        self.send_json({"reference": created["_id"]})


class RefundsAPI(SandboxHandler):
    """Refunds a paid sandbox payment, once per `attempt_id`, never more than was paid."""

    async def post(self, reference: str):
        if len(self.request.body or b"") > MAX_CREATE_BODY:
            raise tornado.web.HTTPError(413, reason=f"request body is larger than {MAX_CREATE_BODY} bytes")
        try:
            body = json.loads(self.request.body or b"null")
        except (ValueError, RecursionError):
            raise _bad("the request body is not valid JSON") from None
        if not isinstance(body, dict) or set(body) != {"attempt_id", "amount"}:
            raise _bad("attempt_id and amount (only) are required")
        attempt, amount = body["attempt_id"], body["amount"]
        if not (isinstance(attempt, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", attempt)):
            raise _bad("attempt_id must be 1 to 64 letters, digits, _ or -")
        if type(amount) is not int or not 0 < amount < 2**63:
            raise _bad("amount must be a positive integer in minor units")
        record = await self.record(reference)
        outcome, record = await self.payments.refund(record["_id"], attempt, amount)
        if outcome != "refunded":
            raise _bad("this payment is not paid, or has less than that left to refund")
        self.send_json({"refund_id": f"sbr_{attempt}", "amount": record["refunds"][attempt],
                        "currency": record["currency"], "state": "succeeded"})


class PaymentAPI(SandboxHandler):
    async def get(self, reference: str):
        record = await self.record(reference)
        self.send_json({k: record[k] for k in ("order_key", "amount", "currency", "state")})


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sandbox payment</title>
<style>body{{font-family:sans-serif;max-width:28em;margin:4em auto}}button{{font-size:1.1em;margin-right:1em}}</style>
</head><body>
<h1>Sandbox payment</h1>
<p>This is a test gateway: no money moves.</p>
<p>Order <strong>{order_key}</strong><br>Amount <strong>{amount}</strong></p>
{body}
</body></html>"""

FORM = """<form method="post" action="/sandbox/pay/{reference}">
<input type="hidden" name="form_token" value="{form_token}">
<button name="decision" value="pay">Pay</button>
<button name="decision" value="cancel">Cancel</button>
</form>"""


def _amount(minor: int, currency: str) -> str:
    return f"{minor / 100:.2f} {currency} ({minor} minor units)"


class PaymentPage(SandboxHandler):
    async def get(self, reference: str):
        record = await self.record(reference)
        if record["state"] == "created":
            body = FORM.format(reference=xhtml_escape(reference),
                               form_token=xhtml_escape(record.get("form_token", "")))
        else:
            body = f"<p>This payment is already <strong>{xhtml_escape(record['state'])}</strong>.</p>"
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(PAGE.format(order_key=xhtml_escape(record["order_key"]),
                                amount=xhtml_escape(_amount(record["amount"], record["currency"])), body=body))

    async def post(self, reference: str):
        decision = self.get_body_argument("decision", "")
        if decision not in ("pay", "cancel"):
            raise tornado.web.HTTPError(400, reason="decision must be pay or cancel")
        record = await self.record(reference)
        # The page's own form carries the token; another site's form cannot know it.
        expected = record.get("form_token")
        sent = self.get_body_argument("form_token", "")
        if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise tornado.web.HTTPError(403, reason="this form is not from the sandbox page; open the page again")
        # A second press (or the other button) after a decision changes nothing.
        await self.payments.decide(reference, "paid" if decision == "pay" else "cancelled")
        self.redirect(record["return_url"], status=303)


class ResultPage(SandboxHandler):
    """A landing page for `site.return_url` in demos: the shop's own site would be here."""

    def get(self, order_key: str):
        result = self.get_query_argument("payment", "")
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(PAGE.format(order_key=xhtml_escape(order_key), amount="see GET /api/shop/orders/"
                                + xhtml_escape(order_key),
                                body=f"<p>Payment result: <strong>{xhtml_escape(result)}</strong></p>"))


@hookimpl
def register_payment_providers(register):
    register(SandboxPayment)


@hookimpl
def register_routes(register):
    register(r"/sandbox/api/payments", PaymentsAPI)
    register(r"/sandbox/api/payments/([^/]+)", PaymentAPI)
    register(r"/sandbox/api/payments/([^/]+)/refunds", RefundsAPI)
    register(r"/sandbox/pay/([^/]+)", PaymentPage)
    register(r"/sandbox/result/([^/]+)", ResultPage)
