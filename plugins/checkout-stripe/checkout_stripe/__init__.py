"""Stripe Checkout Sessions: create a session, send the shopper to `session.url`, and settle
only when Stripe says, server-side, that the session's `payment_status` is "paid".

Refunds use the Refunds API on the session's payment intent, with one idempotency key per
refund attempt; `charge.refunded` and `charge.refund.updated` events report them back.

Webhooks (`checkout.session.*`, `charge.refund*` events) are checked against the `Stripe-Signature` header:
HMAC-SHA256 of "<t>.<raw body>" with the endpoint's signing secret, compared in constant
time, and refused when `t` is more than `webhook_tolerance` seconds away from now.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from marshmallow import ValidationError, fields, validate, validates_schema

from checkout_server.plugin import (
    GatewayClient,
    GatewayError,
    GatewaySettings,
    Notification,
    NotificationError,
    OrderInfo,
    PaymentCheck,
    PaymentProvider,
    PaymentStart,
    PaymentState,
    PaymentUrls,
    ProviderError,
    Refund,
    RefundRequest,
    RefundState,
    hookimpl,
)

log = logging.getLogger("checkout_stripe")

API_URL = "https://api.stripe.com"
# What the return URL carries when the shopper cancels on Stripe's page (cancel_url).
CANCELLED = "cancelled"


class StripeSettings(GatewaySettings):  # + base_url, timeout
    secret_key = fields.String(required=True, validate=validate.Regexp(r"^(sk|rk)_(test|live)_\S+$"))
    # The signing secret of the webhook endpoint ("whsec_..."); without it notifications are refused.
    webhook_secret = fields.String(load_default=None, validate=validate.Length(min=1))
    sandbox = fields.Boolean(load_default=False)  # test mode: requires a *_test_ key
    webhook_tolerance = fields.Integer(load_default=300, validate=validate.Range(min=1, max=3600))

    @validates_schema
    def key_matches_mode(self, data, **kwargs):
        mode = "_test_" if data.get("sandbox") else "_live_"
        if mode not in data.get("secret_key", mode):
            raise ValidationError(f"sandbox = {str(bool(data.get('sandbox'))).lower()} needs a "
                                  f"{mode.strip('_')} mode key", "secret_key")


class Stripe(PaymentProvider):
    name = "stripe"
    flow = "redirect"
    settings_schema = StripeSettings

    def __init__(self, method, settings):
        super().__init__(method, settings)
        self.base_url = (settings.get("base_url") or API_URL).rstrip("/")
        self.gateway = GatewayClient("Stripe", self.base_url, timeout=settings.get("timeout", 10.0),
                                     headers={"Authorization": f"Bearer {settings['secret_key']}"})

    async def startup(self) -> None:
        await self.gateway.open()

    async def close(self) -> None:
        await self.gateway.close()

    async def start(self, order: OrderInfo, urls: PaymentUrls) -> PaymentStart:
        params: dict[str, Any] = {
            "mode": "payment",
            # Stripe fills in {CHECKOUT_SESSION_ID}; the session id we trust is the stored one.
            "success_url": f"{urls.return_url}&session_id={{CHECKOUT_SESSION_ID}}",
            "cancel_url": f"{urls.return_url}&{CANCELLED}=1",
            "client_reference_id": order.order_key,
            "metadata": {"order_key": order.order_key},
            "payment_intent_data": {"metadata": {"order_key": order.order_key}},
            # One line for the whole order: the amount to charge is the order's total, shipping included.
            "line_items": [{"quantity": 1, "price_data": {
                "currency": order.currency.lower(),
                "unit_amount": order.total,
                "product_data": {"name": order.description or f"Order {order.order_key}"},
            }}],
        }
        if order.email:
            params["customer_email"] = order.email
        # Stripe replays a key's first answer for 24 hours: a retry reuses the session, and an
        # order key handed out again (after a database reset or restore) gets a new one.
        session = await self._call("POST", "/v1/checkout/sessions", params,
                                   idempotency_key=f"checkout-server-{payment_key(order)}-session")
        if not (isinstance(session.get("id"), str) and isinstance(session.get("url"), str)):
            raise GatewayError("Stripe answered a session without an id or url")
        return PaymentStart(redirect_url=session["url"], reference=session["id"],
                            data={"session_id": session["id"]})

    async def verify_return(self, order: OrderInfo, params: Mapping[str, str]) -> PaymentCheck:
        session_id = order.payment.get("session_id")
        if not session_id:
            return PaymentCheck(PaymentState.FAILED, detail="no Stripe session was started")
        if params.get(CANCELLED):
            # Close the session first, so the shopper cannot pay for an order we cancel.
            return _session_check(await self._expire(session_id))
        return _session_check(await self._call("GET", f"/v1/checkout/sessions/{session_id}"))

    async def check(self, order: OrderInfo) -> PaymentCheck:
        """Retrieve the session; one still open is expired first (the hold is over)."""
        session_id = order.payment.get("session_id")
        if not session_id:
            return PaymentCheck(PaymentState.FAILED, detail="no Stripe session was started")
        session = await self._call("GET", f"/v1/checkout/sessions/{session_id}")
        if session.get("status") == "open":
            session = await self._expire(session_id)
        return _session_check(session)

    async def refund(self, order: OrderInfo, request: RefundRequest) -> Refund:
        """The Refunds API on the session's payment intent, one idempotency key per attempt."""
        intent = await self._payment_intent(order)
        params = {"payment_intent": intent, "amount": request.amount,
                  "metadata": {"order_key": order.order_key, "attempt_id": request.attempt_id}}
        try:
            refund = await self._call("POST", "/v1/refunds", params,
                                      idempotency_key=f"checkout-server-{payment_key(order)}-refund-{request.attempt_id}")
        except _Refused as refused:
            if refused.status in (400, 402, 404):  # Stripe's word on this refund (amount, state, dispute)
                return Refund(RefundState.FAILED, request.amount, request.currency, detail=str(refused))
            raise  # 401/403: our key; 409: the same key still in progress; 429: too fast: try again
        return _refund(refund)

    async def check_refund(self, order: OrderInfo, refund: Refund) -> Refund:
        return _refund(await self._call("GET", f"/v1/refunds/{refund.reference}"))

    async def _payment_intent(self, order: OrderInfo) -> str:
        session_id = order.payment.get("session_id")
        if not session_id:
            raise ProviderError("no Stripe session was started for this order")
        intent = (await self._call("GET", f"/v1/checkout/sessions/{session_id}")).get("payment_intent")
        if isinstance(intent, dict):
            intent = intent.get("id")
        if not isinstance(intent, str):
            raise ProviderError("Stripe took no payment for this order's session")
        return intent

    async def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        secret = self.settings.get("webhook_secret")
        if not secret:
            raise NotificationError("this Stripe method has no webhook_secret configured")
        signature = {k.lower(): v for k, v in headers.items()}.get("stripe-signature", "")
        verify_signature(body, signature, secret, self.settings.get("webhook_tolerance", 300))
        try:
            event = json.loads(body)
            event_id, event_type = event["id"], event["type"]
            session = event["data"]["object"]
        except (ValueError, KeyError, TypeError):
            raise NotificationError("not a Stripe event") from None
        if event_type in REFUND_EVENTS and isinstance(session, dict):
            return await self._refund_notification(event_id, session)
        if not (isinstance(event_type, str) and event_type.startswith("checkout.session.")
                and isinstance(session, dict)):
            return Notification(order_key=None, event_id=event_id)  # not about a payment of ours
        if not isinstance(session.get("id"), str):
            raise NotificationError("a Stripe checkout.session event without a session id")
        # The core settles it only if its session is the order's stored one (`reference`).
        order_key = session.get("client_reference_id") or (session.get("metadata") or {}).get("order_key")
        if event_type == "checkout.session.async_payment_failed":
            check = PaymentCheck(PaymentState.FAILED, reference=session.get("id"), detail=event_type)
        else:  # completed, async_payment_succeeded, expired: the session says which
            check = _session_check(session)
        return Notification(order_key=order_key, check=check, event_id=event_id,
                            reference=session.get("id"))

    async def _refund_notification(self, event_id: str, obj: dict) -> Notification:
        """A charge (charge.refunded) or a refund (charge.refund.updated): every refund of its payment.

        The refunds, the order key and the session are read from Stripe, not from the event.
        """
        intent = obj.get("payment_intent")
        if not isinstance(intent, str):
            return Notification(order_key=None, event_id=event_id)  # not a Checkout payment of ours
        listed = await self._call("GET", f"/v1/refunds?payment_intent={quote(intent)}&limit=100")
        refunds = tuple(_refund(item) for item in listed.get("data") or [] if isinstance(item, dict))
        payment = await self._call("GET", f"/v1/payment_intents/{quote(intent)}")
        order_key = (payment.get("metadata") or {}).get("order_key")
        sessions = await self._call("GET", f"/v1/checkout/sessions?payment_intent={quote(intent)}")
        session_ids = [s.get("id") for s in sessions.get("data") or [] if isinstance(s, dict)]
        if not isinstance(order_key, str) or not session_ids:
            return Notification(order_key=None, event_id=event_id)
        # `reference`: the core records them only on the order whose session this is.
        return Notification(order_key=order_key, event_id=event_id, reference=session_ids[0], refunds=refunds)

    async def _expire(self, session_id: str) -> dict:
        try:
            return await self._call("POST", f"/v1/checkout/sessions/{session_id}/expire", {})
        except _Refused:
            # Not open any more (paid or already expired): the session itself says which.
            return await self._call("GET", f"/v1/checkout/sessions/{session_id}")

    async def _call(self, method: str, path: str, params: dict | None = None,
                    idempotency_key: str | None = None) -> dict:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        data = form_encode(params) if params is not None else None
        answer = await self.gateway.request(method, path, data=data, headers=headers)
        if answer.refused:
            error = answer.body.get("error") if isinstance(answer.body.get("error"), dict) else {}
            log.warning("Stripe refused %s %s: HTTP %s %s", method, path, answer.status, error.get("message"))
            what = ": ".join(str(part) for part in (error.get("type"), error.get("message")) if part)
            raise _Refused(f"Stripe refused the request ({what or answer.status})", answer.status)
        return answer.body


def payment_key(order: OrderInfo) -> str:
    """The order key and the order's random attempt id: order keys alone repeat after a reset."""
    return f"{order.order_key}-{order.attempt_id}" if order.attempt_id else order.order_key


class _Refused(GatewayError):
    """Stripe answered 4xx: a bad key or parameter, or a session in the wrong state."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


# Stripe refund statuses; "requires_action" waits for the customer's details (some methods).
REFUND_STATES = {"succeeded": RefundState.SUCCEEDED, "pending": RefundState.PENDING,
                 "requires_action": RefundState.PENDING, "failed": RefundState.FAILED,
                 "canceled": RefundState.FAILED}
REFUND_EVENTS = {"charge.refunded", "charge.refund.updated"}


def _refund(refund: dict) -> Refund:
    """A Stripe Refund object as the core reads it."""
    state = REFUND_STATES.get(refund.get("status"))
    amount, currency = refund.get("amount"), refund.get("currency")
    if state is None or not isinstance(amount, int) or not isinstance(currency, str):
        raise GatewayError("Stripe answered a refund without a known status, amount or currency")
    reason = refund.get("failure_reason") or ""
    return Refund(state, amount, currency.upper(), reference=refund.get("id"),
                  detail=f"refund {refund.get('status')}" + (f" ({reason})" if reason else ""),
                  attempt_id=str((refund.get("metadata") or {}).get("attempt_id") or ""))


def _session_check(session: dict) -> PaymentCheck:
    """What a Checkout Session object says about the payment, in Stripe's own amount and currency."""
    reference = session.get("id")
    amount = session.get("amount_total")
    currency = session.get("currency")
    if session.get("payment_status") == "paid":
        if not (isinstance(amount, int) and isinstance(currency, str)):
            raise GatewayError("Stripe answered a paid session without amount_total or currency")
        return PaymentCheck(PaymentState.PAID, amount=amount, currency=currency.upper(),
                            reference=reference, detail="paid")
    if session.get("status") == "expired":
        return PaymentCheck(PaymentState.FAILED, reference=reference, detail="session expired")
    # Open, or complete with an asynchronous payment still processing.
    return PaymentCheck(PaymentState.PENDING, reference=reference,
                        detail=f"session {session.get('status')}, payment {session.get('payment_status')}")


def verify_signature(body: bytes, header: str, secret: str, tolerance: int, now: float | None = None) -> int:
    """Check a `Stripe-Signature` header against the raw body; returns its timestamp."""
    timestamp, signatures = None, []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    try:
        timestamp = int(timestamp)
    except (TypeError, ValueError):
        raise NotificationError("Stripe-Signature has no timestamp") from None
    if not signatures:
        raise NotificationError("Stripe-Signature has no v1 signature")
    expected = sign(body, secret, timestamp)
    matches = [hmac.compare_digest(expected, candidate) for candidate in signatures]
    if not any(matches):
        raise NotificationError("Stripe-Signature does not match the body")
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise NotificationError("Stripe-Signature timestamp is outside the tolerance")
    return timestamp


def sign(body: bytes, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def form_encode(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Stripe's form encoding: nested dicts and lists as `a[b][0][c]=v`."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, Mapping):
            pairs.extend(form_encode(value, name))
        elif isinstance(value, (list, tuple)):
            pairs.extend(form_encode({str(i): item for i, item in enumerate(value)}, name))
        elif isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        elif value is not None:
            pairs.append((name, str(value)))
    return pairs


@hookimpl
def register_payment_providers(register):
    register(Stripe)


@hookimpl
def register_fake_gateways(register):
    from .fake import make_app

    register("stripe", make_app)
