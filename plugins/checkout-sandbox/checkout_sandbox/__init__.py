"""Sandbox payments: a redirect flow whose "gateway" is a test page this service serves.

For trying the redirect flow end to end without a real gateway: the shopper is sent to
`/sandbox/pay/<reference>`, sees the order and amount, and presses Pay or Cancel. The
payment and the decision are kept in the plugin's own documents (`PluginDocuments`, which
the core hands to this plugin's provider and routes alike): the provider records the
payment when it starts it and reads the decision back when it verifies a return, so the
query string of the return is never trusted, and no one but the provider can create a
payment. It refunds too, at once: once per refund attempt, never more than was paid. The
pages exist only while a sandbox method is configured. Never configure one in production:
anyone with the link can "pay" there.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime

from tornado.escape import xhtml_escape

from checkout_server.plugin import (
    APIError,
    BaseHandler,
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

MAX_REFERENCE = 64  # "sbx_" + 16 characters; anything longer is no reference
# Refunds of one payment that race each other retry on a changed `version`; this many at most.
REFUND_TRIES = 20


class SandboxPayment(PaymentProvider):
    name = "sandbox"
    flow = "redirect"

    async def start(self, order, urls) -> PaymentStart:
        payment = await self.documents.insert({
            "_id": f"sbx_{secrets.token_urlsafe(12)}",
            # Goes into the page's form and must come back with the decision, so another
            # site cannot make the shopper's browser press Pay (CSRF).
            "form_token": secrets.token_urlsafe(24),
            "order_key": order.order_key,
            "amount": order.total,
            "currency": order.currency,
            "return_url": urls.return_url,
            "state": "created",
            "refunded": 0,  # minor units refunded, at most `amount`
            "refunds": {},  # refund attempt id -> amount
            "version": 0,  # bumped by every refund: the guard that keeps racing refunds apart
            "created_at": datetime.now(UTC),
        })
        reference = payment["_id"]
        # The "gateway" is this service: its pages are at the site's public address.
        return PaymentStart(redirect_url=f"{self.site.base_url}/sandbox/pay/{reference}",
                            reference=reference, data={"reference": reference})

    async def verify_return(self, order, params) -> PaymentCheck:
        # The page sends the shopper back only after a decision; without one, keep waiting.
        return await self._decision(order, undecided=PaymentState.PENDING)

    async def check(self, order) -> PaymentCheck:
        """The recorded decision; none by now (the hold expired) means the payment is over."""
        return await self._decision(order, undecided=PaymentState.FAILED)

    async def refund(self, order, request: RefundRequest) -> Refund:
        """Refunded at once, once per attempt id, never more than was paid."""
        def answer(state: RefundState, detail: str) -> Refund:
            return Refund(state, request.amount, request.currency, detail=detail, attempt_id=request.attempt_id,
                          reference=f"sbr_{request.attempt_id}" if state is RefundState.SUCCEEDED else None)

        for _ in range(REFUND_TRIES):
            payment = await self._payment(order)
            if payment is None:
                return answer(RefundState.FAILED, "no sandbox payment was started")
            refunds = payment["refunds"]
            if request.attempt_id in refunds:  # the repeat of this attempt: refunded already
                return answer(RefundState.SUCCEEDED, "refunded on the sandbox")
            if payment["state"] != "paid" or payment["refunded"] + request.amount > payment["amount"]:
                return answer(RefundState.FAILED, "this payment is not paid, or has less than that left to refund")
            # Read, then write only if no other refund wrote in between (its `version` moved on).
            changed = await self.documents.update(
                payment["_id"], {"refunded": payment["refunded"] + request.amount,
                                 "refunds": {**refunds, request.attempt_id: request.amount},
                                 "version": payment["version"] + 1},
                where={"state": "paid", "version": payment["version"]})
            if changed is not None:
                return answer(RefundState.SUCCEEDED, "refunded on the sandbox")
        raise GatewayError("sandbox refund: the payment kept changing; try again")

    async def _payment(self, order) -> dict | None:
        """The sandbox payment this order started, or None."""
        reference = order.payment.get("reference")
        payment = await self.documents.get(reference) if isinstance(reference, str) else None
        return payment if payment is not None and payment["order_key"] == order.order_key else None

    async def _decision(self, order, undecided: PaymentState) -> PaymentCheck:
        payment = await self._payment(order)
        reference = order.payment.get("reference")
        if payment is None:
            return PaymentCheck(PaymentState.FAILED, detail="no sandbox payment was started")
        if payment["state"] == "paid":
            return PaymentCheck(PaymentState.PAID, amount=payment["amount"], currency=payment["currency"],
                                reference=reference, detail="paid on the sandbox page")
        if payment["state"] == "cancelled":
            return PaymentCheck(PaymentState.FAILED, reference=reference, detail="cancelled on the sandbox page")
        detail = "no decision on the sandbox page" if undecided is PaymentState.FAILED else ""
        return PaymentCheck(undecided, reference=reference, detail=detail)


# -- the sandbox "gateway": its pages, mounted through register_routes

class SandboxHandler(BaseHandler):
    auth = "public"  # the shopper's browser, like a real gateway's pages

    async def authorize(self) -> None:
        if not self.configured_methods(SandboxPayment.name):
            raise APIError(404, "no sandbox payment method is configured")

    def set_default_headers(self):
        super().set_default_headers()
        # No other site may frame these pages (clickjacking the Pay button).
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Content-Security-Policy", "frame-ancestors 'none'")

    async def payment(self, reference: str) -> dict:
        """The sandbox payment `reference`, else 404."""
        payment = await self.documents.get(reference) if len(reference) <= MAX_REFERENCE else None
        if payment is None:
            raise APIError(404, "no such sandbox payment")
        return payment

    def page(self, html: str) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(html)


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
        payment = await self.payment(reference)
        if payment["state"] == "created":
            body = FORM.format(reference=xhtml_escape(reference), form_token=xhtml_escape(payment["form_token"]))
        else:
            body = f"<p>This payment is already <strong>{xhtml_escape(payment['state'])}</strong>.</p>"
        self.page(PAGE.format(order_key=xhtml_escape(payment["order_key"]),
                              amount=xhtml_escape(_amount(payment["amount"], payment["currency"])), body=body))

    async def post(self, reference: str):
        decision = self.get_body_argument("decision", "")
        if decision not in ("pay", "cancel"):
            raise APIError(400, "decision must be pay or cancel")
        payment = await self.payment(reference)
        # The page's own form carries the token; another site's form cannot know it.
        sent = self.get_body_argument("form_token", "")
        if not hmac.compare_digest(sent.encode(), payment["form_token"].encode()):
            raise APIError(403, "this form is not from the sandbox page; open the page again")
        # Decided once: a second press (or the other button) after a decision changes nothing.
        await self.documents.update(reference, {"state": "paid" if decision == "pay" else "cancelled",
                                                "decided_at": datetime.now(UTC)},
                                    where={"state": "created"})
        self.redirect(payment["return_url"], status=303)


class ResultPage(SandboxHandler):
    """A landing page for `site.return_url` in demos: the shop's own site would be here."""

    def get(self, order_key: str):
        result = self.get_query_argument("payment", "")
        self.page(PAGE.format(order_key=xhtml_escape(order_key), amount="see GET /api/shop/orders/"
                                + xhtml_escape(order_key),
                                body=f"<p>Payment result: <strong>{xhtml_escape(result)}</strong></p>"))


@hookimpl
def register_payment_providers(register):
    register(SandboxPayment)


@hookimpl
def register_routes(register):
    register(r"/sandbox/pay/([^/]+)", PaymentPage)
    register(r"/sandbox/result/([^/]+)", ResultPage)
