"""Small in-test payment and shipping providers, and a config using them.

Registered with `TestShop(config=CONFIG, plugins=[checkout_fixtures])` (what `shop()` gives);
the core's tests never depend on the first-party plugin packages.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from checkout_server import clock
from checkout_server.plugin.hookspecs import hookimpl
from checkout_server.plugin.providers import (
    GatewayError,
    Notification,
    NotificationError,
    PaymentCheck,
    PaymentProvider,
    PaymentStart,
    PaymentState,
    ShippingProvider,
    Support,
)
from checkout_server.testing import TestShop

GATEWAY = "https://gateway.test"
# What the fake redirect gateway says about each order's payment: {order_key: PaymentCheck}.
GATEWAY_STATE: dict[str, PaymentCheck] = {}
CALLS: list[tuple[str, str]] = []  # (provider method, order key), for asserting who was asked



def move_clock(monkeypatch, seconds: float) -> None:
    """Move the service's one clock `seconds` ahead (locks, leases, holds, sweeps alike)."""
    real = clock.utcnow
    monkeypatch.setattr(clock, "utcnow", lambda: real() + timedelta(seconds=seconds))


class DirectPay(PaymentProvider):
    """Settled at once (pay on delivery); not for digital goods."""

    name = "test_direct"
    flow = "direct"

    def supports(self, cart):
        if cart.has_digital:
            return Support.no("not available for digital goods")
        return Support.yes()

    async def start(self, order, urls):
        CALLS.append(("start", order.order_key))
        return PaymentStart(settled=True, reference=f"direct-{order.order_key}")


class RedirectPay(PaymentProvider):
    """A redirect gateway whose answers the test sets in GATEWAY_STATE."""

    name = "test_redirect"
    flow = "redirect"

    async def start(self, order, urls):
        CALLS.append(("start", order.order_key))
        assert f"?order={order.order_key}&rt=" in urls.return_url
        return PaymentStart(redirect_url=f"{GATEWAY}/pay/{order.order_key}", reference=f"ref-{order.order_key}",
                            data={"amount": order.total, "return_url": urls.return_url})

    async def check(self, order):
        # Like Stripe's: asked when the hold expires, a payment never made is over (FAILED).
        CALLS.append(("check", order.order_key))
        return _gateway_state(order) or PaymentCheck(PaymentState.FAILED)

    async def verify_return(self, order, params):
        CALLS.append(("verify_return", order.order_key))
        return _gateway_state(order) or PaymentCheck(PaymentState.PENDING)

    async def parse_notification(self, headers, body):
        if headers.get("X-Test-Signature") != "valid":
            raise NotificationError("bad signature")
        data = json.loads(body)
        check = None
        if "state" in data:
            check = PaymentCheck(PaymentState(data["state"]), data.get("amount"), data.get("currency"))
        return Notification(order_key=data.get("order"), check=check, event_id=data.get("event"))


def _gateway_state(order) -> PaymentCheck | None:
    state = GATEWAY_STATE.get(order.order_key)
    if state == "down":
        raise GatewayError("gateway timed out")
    return state


async def return_token(storage, order_key: str) -> str:
    """The order's return token, from the return URL its gateway was given ("" if none)."""
    order = await storage.orders.get(order_key)
    url = ((order or {}).get("payment") or {}).get("data", {}).get("return_url", "")
    return parse_qs(urlsplit(url).query).get("rt", [""])[0]


async def return_path(storage, order_key: str, method: int = 2) -> str:
    """The shopper's way back for a RedirectPay order: its return URL's path and query."""
    return f"/api/shop/checkout/return/{method}?order={order_key}&rt={await return_token(storage, order_key)}"


class GatewayDown(PaymentProvider):
    name = "test_gateway_down"
    flow = "redirect"

    async def start(self, order, urls):
        raise GatewayError("connection refused by gateway.test")


class BrokenPay(PaymentProvider):
    name = "test_broken"
    flow = "redirect"

    async def start(self, order, urls):
        raise RuntimeError("secret internal detail /etc/passwd")


class FlatShipping(ShippingProvider):
    name = "test_flat"

    def quote(self, cart, address):
        return 500


class GBOnlyShipping(ShippingProvider):
    name = "test_gb_only"

    def supports(self, cart, address):
        return Support.yes() if address.country == "GB" else Support.no("ships to GB only")

    def quote(self, cart, address):
        return 300


@hookimpl
def register_payment_providers(register):
    for cls in (DirectPay, RedirectPay, GatewayDown, BrokenPay):
        register(cls)


@hookimpl
def register_shipping_providers(register):
    register(FlatShipping)
    register(GBOnlyShipping)


DIRECT, REDIRECT, DOWN, BROKEN, INACTIVE_PAYMENT = 1, 2, 3, 4, 5
FLAT, GB_ONLY, INACTIVE_SHIPPING = 1, 2, 3
RETURN_URL = "http://shop.test/orders/{order_key}?payment={result}"

CONFIG = {
    "site": {"currency": "EUR", "return_url": RETURN_URL, "base_url": "http://api.shop.test",
             "hold_minutes": 30},
    "payment_methods": [
        {"id": DIRECT, "provider": "test_direct", "title": "Pay on delivery"},
        {"id": REDIRECT, "provider": "test_redirect", "title": "Test gateway"},
        {"id": DOWN, "provider": "test_gateway_down", "title": "Gateway that is down"},
        {"id": BROKEN, "provider": "test_broken", "title": "Buggy provider"},
        {"id": INACTIVE_PAYMENT, "provider": "test_direct", "title": "Switched off", "active": False},
    ],
    "shipping_methods": [
        {"id": FLAT, "provider": "test_flat", "title": "Flat"},
        {"id": GB_ONLY, "provider": "test_gb_only", "title": "GB only"},
        {"id": INACTIVE_SHIPPING, "provider": "test_flat", "title": "Switched off", "active": False},
    ],
}


def shop(**kwargs) -> TestShop:
    """A TestShop with these providers and CONFIG (or `config=...`)."""
    return TestShop(config=kwargs.pop("config", CONFIG), plugins=[sys.modules[__name__]], **kwargs)
