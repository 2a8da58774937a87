"""Zarinpal v4: request.json -> StartPay/{authority} -> back with Authority & Status -> verify.json.

Zarinpal takes whole rials (IRR) or tomans (IRT): the shop's currency must be one of them,
and an order total is sent as it is. verify.json is called with the amount stored on the
order; Zarinpal itself refuses one that differs from what was paid (code -50), and its
answers carry no amount, so a verified payment is reported in the amount and currency the
gateway confirmed: the verify amount and the currency of the request.

Refunds are not supported. Zarinpal's public reference does describe refunds, but not on
the merchant_id API used here (request.json, verify.json): through its merchant API with a
separate access token (Bearer), the GraphQL form keyed by a transaction id ("session_id")
that request/verify never return, at least 20,000 rials, and with no idempotency key, so
a repeat of a request that timed out could refund twice. An admin refunds from Zarinpal's
panel and records a manual refund; the admin API answers 400 saying so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from marshmallow import fields, validate

from checkout_server.plugin import (
    Cart,
    GatewayClient,
    GatewayError,
    GatewaySettings,
    OrderInfo,
    PaymentCheck,
    PaymentProvider,
    PaymentStart,
    PaymentState,
    PaymentUrls,
    ProviderError,
    Support,
    hookimpl,
)

log = logging.getLogger("checkout_zarinpal")

LIVE_URL = "https://payment.zarinpal.com"
SANDBOX_URL = "https://sandbox.zarinpal.com"
CURRENCIES = {"IRR": 10_000, "IRT": 1_000}  # currency -> Zarinpal's minimum amount

PAID = 100
ALREADY_VERIFIED = 101
# Verify answers that are Zarinpal's word on this payment: the amount paid differs (-50), not
# paid or failed (-51, also what a cancelled payment answers). The order is cancelled.
DECLINED = {-50, -51}
# Answers that say our method is misconfigured, not that the shopper did not pay: the
# payment is not this merchant's (-53: merchant_id changed), Zarinpal knows no such authority
# (-54: another host, sandbox vs live), the terminal is invalid, inactive, suspended or
# restricted (-10, -11, -15, -16, -17), the request is invalid (-9), or -55. A GatewayError
# keeps the order on hold; an ERROR naming the order and the code tells the admin, on every
# try until it is fixed. One exception, in `check` (the hold is being decided): see UNKNOWN_AUTHORITY.
CONFIGURATION = {-9, -10, -11, -15, -16, -17, -53, -54, -55}
# -54: Zarinpal knows no such authority. A return keeps the hold (the settings may be fixed
# in time), but when the hold ends an authority Zarinpal does not know can never be paid:
# kept on hold it would hold the order and its stock for ever, so it has failed. -53 stays a
# GatewayError there too: the payment exists and may be paid, to another merchant_id.
UNKNOWN_AUTHORITY = -54
# Anything else (-12 too many attempts, -52 "contact our support team", a code we do not
# know) is gateway trouble: a GatewayError, the order stays on hold and is asked again.


class ZarinpalSettings(GatewaySettings):  # + base_url (overrides the live/sandbox host), timeout
    merchant_id = fields.String(required=True, validate=validate.Length(min=1))
    sandbox = fields.Boolean(load_default=False)


class Zarinpal(PaymentProvider):
    name = "zarinpal"
    flow = "redirect"
    settings_schema = ZarinpalSettings

    def __init__(self, method, settings):
        super().__init__(method, settings)
        base = settings.get("base_url") or (SANDBOX_URL if settings.get("sandbox") else LIVE_URL)
        self.base_url = base.rstrip("/")
        self.gateway = GatewayClient("Zarinpal", f"{self.base_url}/pg/v4/payment",
                                     timeout=settings.get("timeout", 10.0),
                                     headers={"Accept": "application/json"})

    async def startup(self) -> None:
        await self.gateway.open()

    async def close(self) -> None:
        await self.gateway.close()

    def supports(self, cart: Cart) -> Support:
        minimum = CURRENCIES.get(cart.currency)
        if minimum is None:
            return Support.no("Zarinpal only takes Iranian rials (IRR) or tomans (IRT)")
        if cart.total < minimum:  # what the order charges: the goods plus shipping
            return Support.no(f"Zarinpal takes payments of at least {minimum} {cart.currency}")
        return Support.yes()

    async def start(self, order: OrderInfo, urls: PaymentUrls) -> PaymentStart:
        if order.currency not in CURRENCIES:
            raise ProviderError("Zarinpal only takes Iranian rials (IRR) or tomans (IRT)")
        metadata = {"order_id": order.order_key}
        if order.email:
            metadata["email"] = order.email
        if order.phone:
            metadata["mobile"] = order.phone
        answer = await self._post("request.json", {
            "merchant_id": self.settings["merchant_id"],
            "amount": order.total,
            "currency": order.currency,
            "description": order.description or f"Order {order.order_key}",
            "callback_url": urls.return_url,
            "metadata": metadata,
        })
        data = answer.get("data")
        authority = data.get("authority") if isinstance(data, dict) else None
        if not (isinstance(data, dict) and data.get("code") == PAID and isinstance(authority, str) and authority):
            raise GatewayError(f"Zarinpal refused the payment request: {_error_text(answer)}")
        return PaymentStart(
            redirect_url=f"{self.base_url}/pg/StartPay/{authority}",
            reference=authority,
            data={"authority": authority, "amount": order.total, "currency": order.currency},
        )

    async def verify_return(self, order: OrderInfo, params: Mapping[str, str]) -> PaymentCheck:
        # Status=OK/NOK in the query string is the browser's word; only verify.json decides.
        return await self._verify(order, deciding=False)

    async def check(self, order: OrderInfo) -> PaymentCheck:
        """verify.json as the hold ends: settles a shopper who paid and never came back.

        Reached at hold expiry (Zarinpal sends no notifications); an authority Zarinpal does
        not know fails here.
        """
        return await self._verify(order, deciding=True)

    async def _verify(self, order: OrderInfo, *, deciding: bool) -> PaymentCheck:
        """verify.json with the stored amount; `deciding`: the hold is over (see UNKNOWN_AUTHORITY)."""
        authority = order.payment.get("authority")
        if not authority:
            return PaymentCheck(PaymentState.FAILED, detail="no Zarinpal payment was started")
        answer = await self._post("verify.json", {
            "merchant_id": self.settings["merchant_id"],
            "amount": order.total,
            "authority": authority,
        })
        data = answer.get("data")
        code = _code(answer)
        if isinstance(data, dict) and code in (PAID, ALREADY_VERIFIED):
            return PaymentCheck(
                PaymentState.PAID, amount=order.total,
                currency=order.payment.get("currency"),
                reference=str(data.get("ref_id", authority)),
                detail="verified" if code == PAID else "already verified")
        if code in DECLINED:
            return PaymentCheck(PaymentState.FAILED, reference=authority, detail=_error_text(answer))
        if deciding and code == UNKNOWN_AUTHORITY:
            log.error("order %s: Zarinpal knows no payment %s (%s) as its hold ends: the payment has "
                      "failed; if other orders fail so, check the method's host (base_url, sandbox)",
                      order.order_key, authority, _error_text(answer))
            return PaymentCheck(PaymentState.FAILED, reference=authority,
                                detail=f"Zarinpal knows no such payment ({_error_text(answer)})")
        if code in CONFIGURATION:
            log.error("order %s: Zarinpal refused to verify payment %s (%s): check the method's "
                      "merchant_id and host (base_url, sandbox); the order stays on hold until "
                      "it can be verified", order.order_key, authority, _error_text(answer))
        else:
            log.warning("order %s: Zarinpal could not verify payment %s (%s)",
                        order.order_key, authority, _error_text(answer))
        raise GatewayError(f"Zarinpal could not verify the payment: {_error_text(answer)}")

    async def _post(self, endpoint: str, body: dict) -> dict[str, Any]:
        # Zarinpal answers refusals (validation, -50, -51...) as 4xx with a result code in the
        # body: the callers read the code, whatever the status.
        return (await self.gateway.request("POST", f"/{endpoint}", json=body)).body


def _code(answer: dict) -> int | None:
    """The result code, wherever this answer carries it (data on success, errors otherwise)."""
    for part in ("data", "errors"):
        value = answer.get(part)
        if isinstance(value, dict) and isinstance(value.get("code"), int):
            return value["code"]
    return None


def _error_text(answer: dict) -> str:
    for part in ("errors", "data"):
        value = answer.get(part)
        if isinstance(value, dict) and "code" in value:
            return f"code {value.get('code')}: {value.get('message', '')}".strip()
    return "no result code"


@hookimpl
def register_payment_providers(register):
    register(Zarinpal)


@hookimpl
def register_fake_gateways(register):
    from .fake import make_app

    register("zarinpal", make_app)
