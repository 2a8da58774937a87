"""PayPal Orders v2: create an order, send the shopper to its approve link, capture on return.

Paid only when a capture is COMPLETED, in the amount and currency PayPal reports for it.
Every create and capture carries a `PayPal-Request-Id` derived from the order key and the
order's attempt id, so a retry never creates or captures twice, and an order key handed out
again after a database reset never gets an old order. Webhooks are checked the way PayPal
documents: the transmission headers and the raw event go to
/v1/notifications/verify-webhook-signature. A webhook never captures: the shopper's return
(`verify_return`) does, and the hold-expiry check (`check`) for a shopper who approved and
never came back. A refused capture fails the payment only when PayPal declined it; any other
refusal (a duplicate request still in progress, already captured...) reads the order again,
and when the hold is being decided (`check`) an order still uncaptured has failed, unless
another capture of it is in progress.

Refunds refund the order's capture (/v2/payments/captures/{id}/refund) with a
`PayPal-Request-Id` per refund attempt; `PAYMENT.CAPTURE.REFUNDED` and
`PAYMENT.CAPTURE.REVERSED` webhooks report them back. An admin's cancel of an unpaid order
captures nothing: Orders v2 has no void for an order of intent CAPTURE, so an approved
order is left uncaptured (it lapses at PayPal; nothing here ever captures a cancelled order).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from marshmallow import fields, validate

from checkout_server.plugin import (
    Cart,
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
    Support,
    hookimpl,
)

from .money import PAYPAL_CURRENCIES, MoneyError, from_paypal, to_paypal

log = logging.getLogger("checkout_paypal")

LIVE_URL = "https://api-m.paypal.com"
SANDBOX_URL = "https://api-m.sandbox.paypal.com"
CANCELLED = "cancelled"  # what the return URL carries when the shopper cancels at PayPal
# Webhook events about an order of ours; the order's state is then read from PayPal.
ORDER_EVENTS = {"CHECKOUT.ORDER.APPROVED", "CHECKOUT.ORDER.COMPLETED", "CHECKOUT.ORDER.VOIDED"}
CAPTURE_EVENTS = {"PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.DENIED", "PAYMENT.CAPTURE.PENDING"}
# Webhook events about a refund of a capture of ours; the refund is then read from PayPal.
REFUND_EVENTS = {"PAYMENT.CAPTURE.REFUNDED", "PAYMENT.CAPTURE.REVERSED"}
REFUND_STATES = {"COMPLETED": RefundState.SUCCEEDED, "PENDING": RefundState.PENDING,
                 "CANCELLED": RefundState.FAILED, "FAILED": RefundState.FAILED}
# Captures that took money (PayPal itself refuses to refund more than is left of one).
CAPTURED = ("COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED")
# Capture refusals (422) that are PayPal's final word on this payment: the payer's instrument
# or account cannot pay it, or PayPal or the payee's risk settings refuse it. Any other 422
# (PREVIOUS_REQUEST_IN_PROGRESS: "when you send two simultaneous API requests with same
# PayPal-Request-Id header, PayPal processes the first request and might fail the second";
# ORDER_ALREADY_CAPTURED; an issue we do not know) says nothing about the money: the order is
# read again (in `check`, an order still uncaptured then fails: see CAPTURE_IN_PROGRESS).
DECLINED_ISSUES = frozenset({
    "INSTRUMENT_DECLINED", "TRANSACTION_REFUSED", "PAYER_CANNOT_PAY", "PAYER_ACCOUNT_LOCKED_OR_CLOSED",
    "PAYER_ACCOUNT_RESTRICTED", "REDIRECT_PAYER_FOR_ALTERNATE_FUNDING", "CARD_EXPIRED",
    "MAX_NUMBER_OF_PAYMENT_ATTEMPTS_EXCEEDED", "TRANSACTION_LIMIT_EXCEEDED",
    "TRANSACTION_RECEIVING_LIMIT_EXCEEDED", "COMPLIANCE_VIOLATION", "DECLINED_DUE_TO_RELATED_TXN",
    "PAYEE_BLOCKED_TRANSACTION", "TRANSACTION_BLOCKED_BY_PAYEE", "CARD_BRAND_NOT_SUPPORTED",
    "DOMESTIC_TRANSACTION_REQUIRED",
})
# The one capture refusal after which an order still APPROVED may yet be paid: another capture
# with the same PayPal-Request-Id is in progress (the order reads APPROVED while it runs).
# After any other refusal no money moved; only the hold-expiry `check` acts on that.
CAPTURE_IN_PROGRESS = "PREVIOUS_REQUEST_IN_PROGRESS"
# Orders still waiting for the shopper: never approved, so there is nothing to capture.
AWAITING_PAYER = ("CREATED", "PAYER_ACTION_REQUIRED", "SAVED")
TRANSMISSION_HEADERS = ("paypal-transmission-id", "paypal-transmission-time", "paypal-transmission-sig",
                        "paypal-cert-url", "paypal-auth-algo")


class PayPalSettings(GatewaySettings):  # + base_url (overrides the live/sandbox host), timeout
    client_id = fields.String(required=True, validate=validate.Length(min=1))
    client_secret = fields.String(required=True, validate=validate.Length(min=1))
    sandbox = fields.Boolean(load_default=False)
    # The id PayPal gave the webhook pointing at our notify URL; without it webhooks are refused.
    webhook_id = fields.String(load_default=None, validate=validate.Length(min=1))
    webhook_tolerance = fields.Integer(load_default=300, validate=validate.Range(min=1, max=86400))
    brand_name = fields.String(load_default=None, validate=validate.Length(min=1, max=127))


class _Refused(GatewayError):
    """PayPal answered 4xx; `issue` is the first detail's issue code, if any."""

    def __init__(self, status: int, name: str, issue: str | None):
        super().__init__(f"PayPal refused the request ({issue or name or status})")
        self.status, self.name, self.issue = status, name, issue


class PayPal(PaymentProvider):
    name = "paypal"
    flow = "redirect"
    settings_schema = PayPalSettings

    def __init__(self, method, settings):
        super().__init__(method, settings)
        base = settings.get("base_url") or (SANDBOX_URL if settings.get("sandbox") else LIVE_URL)
        self.base_url = base.rstrip("/")
        self.gateway = GatewayClient("PayPal", self.base_url, timeout=settings.get("timeout", 10.0))
        self._token: tuple[str, float] | None = None  # (access token, monotonic expiry)
        self._token_lock = asyncio.Lock()

    async def startup(self) -> None:
        await self.gateway.open()

    async def close(self) -> None:
        await self.gateway.close()

    def supports(self, cart: Cart) -> Support:
        if cart.currency not in PAYPAL_CURRENCIES:
            return Support.no(f"PayPal does not take payments in {cart.currency}")
        try:  # what start() will send: the total, shipping included (HUF, TWD: whole units only)
            to_paypal(cart.total, cart.currency)
        except MoneyError as exc:
            return Support.no(f"{exc}, and this total is not")
        return Support.yes()

    async def start(self, order: OrderInfo, urls: PaymentUrls) -> PaymentStart:
        try:
            value = to_paypal(order.total, order.currency)
        except MoneyError as exc:
            raise ProviderError(str(exc)) from None
        context = {"return_url": urls.return_url, "cancel_url": f"{urls.return_url}&{CANCELLED}=1",
                   "user_action": "PAY_NOW", "shipping_preference": "NO_SHIPPING"}
        if self.settings.get("brand_name"):
            context["brand_name"] = self.settings["brand_name"]
        created = await self._api("POST", "/v2/checkout/orders", {
            "intent": "CAPTURE",
            "purchase_units": [{
                "reference_id": order.order_key,
                "custom_id": order.order_key,
                "description": (order.description or f"Order {order.order_key}")[:127],
                "amount": {"currency_code": order.currency, "value": value},
            }],
            "payment_source": {"paypal": {"experience_context": context}},
        }, request_id=f"checkout-server-{payment_key(order)}-create")
        links = {link.get("rel"): link.get("href") for link in created.get("links") or []
                 if isinstance(link, dict)}
        approve = links.get("payer-action") or links.get("approve")
        if not (isinstance(created.get("id"), str) and isinstance(approve, str)):
            raise GatewayError("PayPal answered an order without an id or approve link")
        return PaymentStart(redirect_url=approve, reference=created["id"],
                            data={"paypal_order_id": created["id"]})

    async def verify_return(self, order: OrderInfo, params: Mapping[str, str]) -> PaymentCheck:
        # The query's `token` is PayPal's order id as the browser claims it; we use the stored one.
        paypal_id = order.payment.get("paypal_order_id")
        if not paypal_id:
            return PaymentCheck(PaymentState.FAILED, detail="no PayPal order was started")
        if params.get(CANCELLED):
            found = await self._api("GET", f"/v2/checkout/orders/{paypal_id}")
            if found.get("status") == "COMPLETED":  # paid in another tab before cancelling here
                return _order_check(found)
            return PaymentCheck(PaymentState.FAILED, reference=paypal_id, detail="cancelled by the shopper")
        return await self._capture(order, paypal_id)

    async def check(self, order: OrderInfo) -> PaymentCheck:
        """Capture an approved order; one never approved has failed (the hold is over).

        Reached only where the hold is being decided: at hold expiry (the sweeper). Never by
        a return or a webhook: `verify_return` is our own and every notification carries
        its own check.
        """
        paypal_id = order.payment.get("paypal_order_id")
        if not paypal_id:
            return PaymentCheck(PaymentState.FAILED, detail="no PayPal order was started")
        found = await self._api("GET", f"/v2/checkout/orders/{paypal_id}")
        if found.get("status") == "APPROVED":
            return await self._capture(order, paypal_id, deciding=True)
        check = _order_check(found)
        if check.state is PaymentState.PENDING and check.detail in AWAITING_PAYER:
            return PaymentCheck(PaymentState.FAILED, reference=paypal_id, detail="never approved by the shopper")
        return check

    async def cancel_payment(self, order: OrderInfo) -> PaymentCheck:
        """The order as PayPal has it, never captured here: one not paid has failed."""
        paypal_id = order.payment.get("paypal_order_id")
        if not paypal_id:
            return PaymentCheck(PaymentState.FAILED, detail="no PayPal order was started")
        check = _order_check(await self._api("GET", f"/v2/checkout/orders/{paypal_id}"))
        if check.state is PaymentState.PENDING and check.detail != "capture pending":
            # Created, approved or waiting for the payer: no money moved, and none will.
            return PaymentCheck(PaymentState.FAILED, reference=paypal_id,
                                detail=f"PayPal order {check.detail}, left uncaptured")
        return check

    async def refund(self, order: OrderInfo, request: RefundRequest) -> Refund:
        """Refund part of the order's capture; the PayPal-Request-Id is the attempt's."""
        try:
            value = to_paypal(request.amount, request.currency)
        except MoneyError as exc:
            raise ProviderError(str(exc)) from None
        capture_id = await self._capture_id(order)
        body = {"amount": {"value": value, "currency_code": request.currency}, "custom_id": order.order_key}
        if request.reason:
            body["note_to_payer"] = request.reason[:255]
        try:
            refund = await self._api("POST", f"/v2/payments/captures/{capture_id}/refund", body,
                                     request_id=f"checkout-server-{payment_key(order)}-refund-{request.attempt_id}")
        except _Refused as refused:
            if refused.status in (400, 404, 422) and refused.issue != CAPTURE_IN_PROGRESS:
                return Refund(RefundState.FAILED, request.amount, request.currency, detail=str(refused))
            raise  # 403 (our credentials), a duplicate still in progress...: try again later
        return _refund(refund, request.attempt_id)

    async def check_refund(self, order: OrderInfo, refund: Refund) -> Refund:
        return _refund(await self._api("GET", f"/v2/payments/refunds/{refund.reference}"), refund.attempt_id)

    async def _capture_id(self, order: OrderInfo) -> str:
        paypal_id = order.payment.get("paypal_order_id")
        if not paypal_id:
            raise ProviderError("no PayPal order was started for this order")
        found = await self._api("GET", f"/v2/checkout/orders/{paypal_id}")
        captures = [capture for unit in found.get("purchase_units") or []
                    for capture in ((unit.get("payments") or {}).get("captures") or [])
                    if capture.get("status") in CAPTURED and isinstance(capture.get("id"), str)]
        if not captures:
            raise ProviderError(f"PayPal order {paypal_id} has no capture to refund")
        return captures[0]["id"]

    async def _refund_notification(self, event_id: str, resource: dict) -> Notification:
        """A refund of a capture: the refund and its capture (order key, PayPal order) read from PayPal."""
        refund_id = resource.get("id")
        up = next((link.get("href") for link in resource.get("links") or []
                   if isinstance(link, dict) and link.get("rel") == "up"), None)
        if not (isinstance(refund_id, str) and isinstance(up, str) and "/v2/payments/captures/" in up):
            return Notification(order_key=None, event_id=event_id)
        capture = await self._api("GET", "/v2/payments/captures/" + up.rsplit("/captures/", 1)[1])
        paypal_id = ((capture.get("supplementary_data") or {}).get("related_ids") or {}).get("order_id")
        order_key = capture.get("custom_id")
        if not (isinstance(paypal_id, str) and isinstance(order_key, str)):
            return Notification(order_key=None, event_id=event_id)
        refund = _refund(await self._api("GET", f"/v2/payments/refunds/{refund_id}"))
        return Notification(order_key=order_key, event_id=event_id, reference=paypal_id, refunds=(refund,))

    async def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        webhook_id = self.settings.get("webhook_id")
        if not webhook_id:
            raise NotificationError("this PayPal method has no webhook_id configured")
        lowered = {k.lower(): v for k, v in headers.items()}
        missing = [name for name in TRANSMISSION_HEADERS if not lowered.get(name)]
        if missing:
            raise NotificationError(f"missing {', '.join(missing)}")
        try:
            sent = datetime.fromisoformat(lowered["paypal-transmission-time"])
            sent = (sent if sent.tzinfo else sent.replace(tzinfo=UTC)).timestamp()
        except ValueError:
            raise NotificationError("PAYPAL-TRANSMISSION-TIME is not a date-time") from None
        if abs(time.time() - sent) > self.settings.get("webhook_tolerance", 300):
            raise NotificationError("PAYPAL-TRANSMISSION-TIME is outside the tolerance")
        try:
            event = json.loads(body)
            event_id, event_type, resource = event["id"], event["event_type"], event["resource"]
        except (ValueError, KeyError, TypeError):
            raise NotificationError("not a PayPal webhook event") from None
        if not isinstance(resource, dict):
            raise NotificationError("not a PayPal webhook event")
        # The raw body goes back verbatim: PayPal signed these exact bytes.
        request = json.dumps({
            "auth_algo": lowered["paypal-auth-algo"], "cert_url": lowered["paypal-cert-url"],
            "transmission_id": lowered["paypal-transmission-id"],
            "transmission_sig": lowered["paypal-transmission-sig"],
            "transmission_time": lowered["paypal-transmission-time"], "webhook_id": webhook_id,
        })[:-1].encode() + b', "webhook_event": ' + body + b"}"
        verdict = await self._api("POST", "/v1/notifications/verify-webhook-signature", raw=request)
        if verdict.get("verification_status") != "SUCCESS":
            raise NotificationError("PayPal did not verify the webhook signature")

        if event_type in REFUND_EVENTS:
            return await self._refund_notification(event_id, resource)
        if event_type in ORDER_EVENTS:
            paypal_id = resource.get("id")
            units = resource.get("purchase_units") or [{}]
            order_key = units[0].get("custom_id") or units[0].get("reference_id")
        elif event_type in CAPTURE_EVENTS:
            related = (resource.get("supplementary_data") or {}).get("related_ids") or {}
            paypal_id = related.get("order_id")
            order_key = resource.get("custom_id")
        else:
            return Notification(order_key=None, event_id=event_id)
        if not (isinstance(paypal_id, str) and isinstance(order_key, str)):
            return Notification(order_key=None, event_id=event_id)
        if event_type in CAPTURE_EVENTS:  # the capture itself, signed by PayPal: its amount is final
            check = _capture_event_check(event_type, resource, paypal_id)
        else:
            # The order's state now, not the event's copy (older than another delivery may be).
            # Never captured here, so an approved order is PENDING: the shopper's return is
            # capturing it (a second capture would race that one) or hold expiry will.
            check = _order_check(await self._api("GET", f"/v2/checkout/orders/{paypal_id}"))
        return Notification(order_key=order_key, check=check, event_id=event_id, reference=paypal_id)

    # -- PayPal calls

    async def _capture(self, order: OrderInfo, paypal_id: str, *, deciding: bool = False) -> PaymentCheck:
        """Capture the order; `deciding`: the hold is over, so an answer must be final if it can."""
        try:
            captured = await self._api("POST", f"/v2/checkout/orders/{paypal_id}/capture", {},
                                       request_id=f"checkout-server-{payment_key(order)}-capture")
        except _Refused as refused:
            if refused.status == 404 or (refused.status == 422 and refused.issue in DECLINED_ISSUES):
                # Declined, or no such order at PayPal: this payment will never complete.
                return PaymentCheck(PaymentState.FAILED, reference=paypal_id, detail=str(refused))
            if refused.status != 422:
                raise
            # Not a word on the money (see DECLINED_ISSUES): the order's state decides. A
            # capture still in progress leaves it APPROVED, which is PENDING: the hold stays.
            found = await self._api("GET", f"/v2/checkout/orders/{paypal_id}")
            uncaptured = found.get("status") in ("APPROVED", *AWAITING_PAYER)
            if deciding and uncaptured and refused.issue != CAPTURE_IN_PROGRESS:
                # Refused, and no capture in flight: no money moved. A refusal that lasts (a
                # payee or configuration problem, ORDER_NOT_APPROVED...) would otherwise keep
                # the hold and its stock for ever, PENDING on every sweep; the hold is over.
                reason = refused.issue or refused.name or str(refused.status)
                log.warning("order %s: PayPal refused to capture its PayPal order %s (%s) as its hold "
                            "ended: the payment has failed", order.order_key, paypal_id, reason)
                return PaymentCheck(PaymentState.FAILED, reference=paypal_id,
                                    detail=f"PayPal refused the capture ({reason})")
            check = _order_check(found)
            if check.state is PaymentState.PENDING:
                check = dataclasses.replace(check, detail=f"{check.detail}; capture refused: {refused.issue}")
            return check
        return _order_check(captured)

    async def _access_token(self, renew: bool = False) -> str:
        async with self._token_lock:
            if self._token and not renew and self._token[1] > time.monotonic():
                return self._token[0]
            answer = await self._request(
                "POST", "/v1/oauth2/token", data={"grant_type": "client_credentials"},
                headers={"Authorization": _basic_auth(self.settings["client_id"], self.settings["client_secret"])})
            token, lifetime = answer.get("access_token"), answer.get("expires_in")
            if not isinstance(token, str) or not isinstance(lifetime, int):
                raise GatewayError("PayPal answered a token request without a token")
            self._token = (token, time.monotonic() + max(lifetime - 60, 0))
            return token

    async def _api(self, method: str, path: str, body: dict | None = None, *, raw: bytes | None = None,
                   request_id: str | None = None) -> dict:
        headers = {"Content-Type": "application/json", "Prefer": "return=representation"}
        if request_id:
            headers["PayPal-Request-Id"] = request_id
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        for attempt in (1, 2):
            headers["Authorization"] = f"Bearer {await self._access_token(renew=attempt == 2)}"
            try:
                return await self._request(method, path, data=data, headers=headers)
            except _Refused as refused:
                if refused.status != 401 or attempt == 2:  # 401: the token expired early
                    raise
        raise AssertionError("unreachable")

    async def _request(self, method: str, path: str, **kwargs) -> dict:
        answer = await self.gateway.request(method, path, **kwargs)
        if answer.refused:
            body = answer.body
            details = body.get("details") if isinstance(body.get("details"), list) else []
            issue = details[0].get("issue") if details and isinstance(details[0], dict) else None
            name = body.get("name") or body.get("error") or ""
            log.warning("PayPal refused %s %s: HTTP %s %s %s", method, path, answer.status, name, issue or "")
            raise _Refused(answer.status, name, issue)
        return answer.body


def payment_key(order: OrderInfo) -> str:
    """The order key and the order's random attempt id: order keys alone repeat after a reset."""
    return f"{order.order_key}-{order.attempt_id}" if order.attempt_id else order.order_key


def _basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _order_check(order: dict) -> PaymentCheck:
    """What an Orders v2 order says: paid only with COMPLETED captures, in PayPal's amounts."""
    reference = order.get("id")
    captures = [capture for unit in order.get("purchase_units") or []
                for capture in ((unit.get("payments") or {}).get("captures") or [])]
    completed = [c for c in captures if c.get("status") == "COMPLETED"]
    if completed:
        currencies = {(c.get("amount") or {}).get("currency_code") for c in completed}
        if len(currencies) != 1 or not isinstance(next(iter(currencies)), str):
            raise GatewayError("PayPal answered captures without one currency")
        currency = currencies.pop()
        try:
            amount = sum(from_paypal(c["amount"]["value"], currency) for c in completed)
        except (MoneyError, KeyError) as exc:
            raise GatewayError(f"PayPal answered a capture amount we cannot read: {exc}") from None
        return PaymentCheck(PaymentState.PAID, amount=amount, currency=currency, reference=reference,
                            detail=f"captured {', '.join(str(c.get('id')) for c in completed)}")
    if any(c.get("status") in ("PENDING",) for c in captures):
        return PaymentCheck(PaymentState.PENDING, reference=reference, detail="capture pending")
    if captures or order.get("status") in ("COMPLETED", "VOIDED"):
        return PaymentCheck(PaymentState.FAILED, reference=reference,
                            detail=f"no completed capture (order {order.get('status')})")
    return PaymentCheck(PaymentState.PENDING, reference=reference, detail=str(order.get("status")))


def _refund(refund: dict, attempt_id: str = "") -> Refund:
    """A PayPal refund (Payments v2) as the core reads it, in PayPal's amount."""
    state = REFUND_STATES.get(refund.get("status"))
    amount = refund.get("amount") if isinstance(refund.get("amount"), dict) else {}
    currency = amount.get("currency_code")
    try:
        if state is None or not isinstance(currency, str):
            raise MoneyError(f"status {refund.get('status')!r}, currency {currency!r}")
        value = from_paypal(amount.get("value"), currency)
    except MoneyError as exc:
        raise GatewayError(f"PayPal answered a refund we cannot read: {exc}") from None
    reason = (refund.get("status_details") or {}).get("reason")
    return Refund(state, value, currency, reference=refund.get("id"),
                  detail=f"refund {refund.get('status')}" + (f" ({reason})" if reason else ""),
                  attempt_id=attempt_id)


def _capture_event_check(event_type: str, capture: dict, paypal_id: str) -> PaymentCheck:
    """What a PAYMENT.CAPTURE.* event says, in the captured amount and currency."""
    if event_type == "PAYMENT.CAPTURE.DENIED":
        return PaymentCheck(PaymentState.FAILED, reference=paypal_id, detail=f"capture {capture.get('id')} denied")
    if event_type != "PAYMENT.CAPTURE.COMPLETED":
        return PaymentCheck(PaymentState.PENDING, reference=paypal_id, detail=f"capture {capture.get('id')} pending")
    amount = capture.get("amount") if isinstance(capture.get("amount"), dict) else {}
    currency = amount.get("currency_code")
    try:
        if not isinstance(currency, str):
            raise MoneyError("no currency_code")
        value = from_paypal(amount.get("value"), currency)
    except MoneyError as exc:
        raise NotificationError(f"a PayPal capture event with an amount we cannot read: {exc}") from None
    return PaymentCheck(PaymentState.PAID, amount=value, currency=currency, reference=paypal_id,
                        detail=f"captured {capture.get('id')}")


@hookimpl
def register_payment_providers(register):
    register(PayPal)


@hookimpl
def register_fake_gateways(register):
    from .fake import make_app

    register("paypal", make_app)
