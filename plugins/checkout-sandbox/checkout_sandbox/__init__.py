"""Sandbox payments: a redirect flow whose "gateway" is a test page this service serves.

For trying the redirect flow end to end without a real gateway: the shopper is sent to
`/sandbox/pay/<reference>`, sees the order and amount, and presses Pay or Cancel. The
decision is recorded server-side (storage `sandbox_payments`), and the provider verifies a
return by asking the sandbox "gateway" over HTTP, as a real provider asks its gateway;
the query string of the return is never trusted. The pages exist only while a sandbox
method is configured. Never configure one in production: anyone can "pay" there.
"""

from __future__ import annotations

import json

import tornado.web
from tornado.escape import xhtml_escape

from checkout_server.gatewayhttp import GatewayClient
from checkout_server.hookspecs import hookimpl
from checkout_server.providers import (
    GatewayError,
    PaymentCheck,
    PaymentProvider,
    PaymentStart,
    PaymentState,
)

RETURN_PATH = "/api/shop/checkout/return/"
TIMEOUT = 10.0


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

    def send_json(self, data: dict, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(data))

    def write_error(self, status_code: int, **kwargs) -> None:
        self.send_json({"error": self._reason}, status_code)


class PaymentsAPI(SandboxHandler):
    async def post(self):
        try:
            body = json.loads(self.request.body or b"{}")
            amount, currency = body["amount"], body["currency"]
            order_key, return_url = body["order_key"], body["return_url"]
            assert isinstance(amount, int) and all(isinstance(v, str) for v in (currency, order_key, return_url))
        except (ValueError, KeyError, TypeError, AssertionError):
            raise tornado.web.HTTPError(400, reason="order_key, amount, currency and return_url are required")
        # Only back to this shop: the page must not become an open redirect.
        if not return_url.startswith(self.settings["method_registry"].table.site.base_url + "/"):
            raise tornado.web.HTTPError(400, reason="return_url must point at this shop")
        created = await self.payments.create(order_key, amount, currency, return_url)
        self.send_json({"reference": created["_id"]})


class PaymentAPI(SandboxHandler):
    async def get(self, reference: str):
        record = await self.payments.get(reference)
        if record is None:
            raise tornado.web.HTTPError(404, reason="no such sandbox payment")
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
<button name="decision" value="pay">Pay</button>
<button name="decision" value="cancel">Cancel</button>
</form>"""


def _amount(minor: int, currency: str) -> str:
    return f"{minor / 100:.2f} {currency} ({minor} minor units)"


class PaymentPage(SandboxHandler):
    async def get(self, reference: str):
        record = await self.payments.get(reference)
        if record is None:
            raise tornado.web.HTTPError(404, reason="no such sandbox payment")
        if record["state"] == "created":
            body = FORM.format(reference=xhtml_escape(reference))
        else:
            body = f"<p>This payment is already <strong>{xhtml_escape(record['state'])}</strong>.</p>"
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(PAGE.format(order_key=xhtml_escape(record["order_key"]),
                                amount=xhtml_escape(_amount(record["amount"], record["currency"])), body=body))

    async def post(self, reference: str):
        decision = self.get_body_argument("decision", "")
        if decision not in ("pay", "cancel"):
            raise tornado.web.HTTPError(400, reason="decision must be pay or cancel")
        record = await self.payments.get(reference)
        if record is None:
            raise tornado.web.HTTPError(404, reason="no such sandbox payment")
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
    register(r"/sandbox/pay/([^/]+)", PaymentPage)
    register(r"/sandbox/result/([^/]+)", ResultPage)
