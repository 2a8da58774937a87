"""Zarinpal v4: request.json -> StartPay/{authority} -> back with Authority & Status -> verify.json.

Zarinpal takes whole rials (IRR) or tomans (IRT): the shop's currency must be one of them,
and an order total is sent as it is. verify.json is called with the amount stored on the
order; Zarinpal itself refuses one that differs from what was paid (code -50), and its
answers carry no amount, so a verified payment is reported in the amount and currency the
gateway confirmed: the verify amount and the currency of the request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp
from marshmallow import Schema, fields, validate

from checkout_server.hookspecs import hookimpl
from checkout_server.providers import (
    Cart,
    GatewayError,
    OrderInfo,
    PaymentCheck,
    PaymentProvider,
    PaymentStart,
    PaymentState,
    PaymentUrls,
    ProviderError,
    Support,
)

LIVE_URL = "https://payment.zarinpal.com"
SANDBOX_URL = "https://sandbox.zarinpal.com"
CURRENCIES = {"IRR": 10_000, "IRT": 1_000}  # currency -> Zarinpal's minimum amount

PAID = 100
ALREADY_VERIFIED = 101
# Verify answers that are the gateway's decision about this payment (not a fault of ours or
# theirs): amount differs, not paid / failed, not this merchant's, unknown authority.
DECLINED = {-50, -51, -53, -54}


class ZarinpalSettings(Schema):
    merchant_id = fields.String(required=True, validate=validate.Length(min=1))
    sandbox = fields.Boolean(load_default=False)
    # Overrides the live/sandbox host, e.g. a local fake: "http://127.0.0.1:9001".
    base_url = fields.String(load_default=None,
                             validate=validate.URL(require_tld=False, schemes={"http", "https"}))
    timeout = fields.Float(load_default=10.0, validate=validate.Range(min=0.01, max=120))


class Zarinpal(PaymentProvider):
    name = "zarinpal"
    flow = "redirect"
    settings_schema = ZarinpalSettings

    def __init__(self, method, settings):
        super().__init__(method, settings)
        base = settings.get("base_url") or (SANDBOX_URL if settings.get("sandbox") else LIVE_URL)
        self.base_url = base.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=settings.get("timeout", 10.0))
        self._session: aiohttp.ClientSession | None = None

    async def startup(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self.timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def supports(self, cart: Cart) -> Support:
        minimum = CURRENCIES.get(cart.currency)
        if minimum is None:
            return Support.no("Zarinpal only takes Iranian rials (IRR) or tomans (IRT)")
        if cart.subtotal < minimum:
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
        return await self.check(order)

    async def check(self, order: OrderInfo) -> PaymentCheck:
        """verify.json with the stored amount; also settles a payment whose shopper never came back."""
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
        raise GatewayError(f"Zarinpal could not verify the payment: {_error_text(answer)}")

    async def _post(self, endpoint: str, body: dict) -> dict[str, Any]:
        if self._session is None:
            raise GatewayError("the Zarinpal method is not started")
        url = f"{self.base_url}/pg/v4/payment/{endpoint}"
        try:
            async with self._session.post(url, json=body, headers={"Accept": "application/json"}) as resp:
                raw = await resp.read()
                status = resp.status
        except TimeoutError:
            raise GatewayError("Zarinpal did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise GatewayError(f"Zarinpal is unreachable: {exc.__class__.__name__}") from None
        if status >= 500:
            raise GatewayError(f"Zarinpal answered HTTP {status}")
        try:
            answer = json.loads(raw)
        except ValueError:
            raise GatewayError(f"Zarinpal answered HTTP {status} with a body that is not JSON") from None
        if not isinstance(answer, dict):
            raise GatewayError("Zarinpal answered JSON that is not an object")
        return answer


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
