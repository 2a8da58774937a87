"""A reload that gives an order's payment method id to another provider decides nothing.

The return, the notification and hold expiry ask only the provider that took the payment
(`settlement.method_for`): a method id now bound to another provider is treated exactly like
a removed method. Review 3: the new provider's "no such payment" cancelled orders paid at
their own gateway.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import checkout_fixtures as kit
import pytest
from invariants import assert_stock_invariant

from checkout_server.config import parse_config
from checkout_server.payments.sweeper import sweep
from checkout_server.plugin.hookspecs import hookimpl
from checkout_server.plugin.providers import (
    Notification,
    NotificationError,
    PaymentCheck,
    PaymentProvider,
    PaymentStart,
    PaymentState,
)
from checkout_server.testing import TestShop


class OtherGateway(PaymentProvider):
    """Another gateway: it knows none of the orders paid elsewhere ("no such payment")."""

    name = "test_other_gateway"
    flow = "redirect"

    async def start(self, order, urls):
        return PaymentStart(redirect_url=f"https://other.test/pay/{order.order_key}", reference="other")

    async def check(self, order):
        kit.CALLS.append(("other.check", order.order_key))
        return PaymentCheck(PaymentState.FAILED, detail="no such payment at the other gateway")

    async def parse_notification(self, headers, body):
        if headers.get("X-Test-Signature") != "valid":
            raise NotificationError("bad signature")
        return Notification(order_key=json.loads(body)["order"], event_id="evt-other")


class OtherPlugin:
    @hookimpl
    def register_payment_providers(register):
        register(OtherGateway)


MOVED = 6  # where the admin moved the test gateway
REBOUND = {**kit.CONFIG, "payment_methods": [
    *[m for m in kit.CONFIG["payment_methods"] if m["id"] != kit.REDIRECT],
    {"id": kit.REDIRECT, "provider": "test_other_gateway", "title": "Another gateway"},
    {"id": MOVED, "provider": "test_redirect", "title": "Test gateway"}]}
def later() -> datetime:
    """Past a hold placed now: computed at call time, not when the module was imported."""
    return datetime.now(UTC) + timedelta(minutes=31)


@pytest.fixture(autouse=True)
def fresh_gateway():
    kit.GATEWAY_STATE.clear()
    kit.CALLS.clear()


def shop() -> TestShop:
    return TestShop(config=kit.CONFIG, plugins=[kit, OtherPlugin])


async def reload(s, raw: dict) -> None:
    registry = s.app.method_registry
    await registry.swap(registry.build(parse_config(raw, "<reload>")))


async def paid_then_rebound(s):
    """An order paid at its gateway (its return lost), then id 2 given to another provider."""
    p = await s.product(price=1000, stock=5)
    c = await s.customer(cart={p["_id"]: 2})
    key = (await c.checkout(kit.REDIRECT, kit.FLAT)).body["next_step"].rsplit("/", 1)[1]
    kit.GATEWAY_STATE[key] = PaymentCheck(PaymentState.PAID, amount=2500, currency="EUR", reference=f"ref-{key}")
    await reload(s, REBOUND)
    return p, c, key


def logged_rebound(caplog, key: str) -> bool:
    """An ERROR naming the order, the method id and both providers."""
    return any(r.levelno == logging.ERROR and key in r.getMessage() and f"method {kit.REDIRECT}" in r.getMessage()
               and "test_other_gateway" in r.getMessage() and "test_redirect" in r.getMessage()
               for r in caplog.records)


async def assert_untouched(s, p, key) -> None:
    order = await s.storage.orders.get(key)
    assert order["status"] == "HOLD" and order["stock"] == "held", order["history"]
    assert (await s.storage.products.get(p["_id"]))["stock"] == 3
    assert not [call for call in kit.CALLS if call[0] == "other.check"]  # the other gateway was never asked


@pytest.mark.gen_test
async def test_expiry_keeps_the_hold_of_a_method_given_to_another_provider(caplog):
    async with shop() as s:
        p, c, key = await paid_then_rebound(s)
        with caplog.at_level(logging.ERROR):
            report = await sweep(s.storage, s.methods, now=later())
        assert report.deferred == [key] and report.cancelled == [] and report.paid == []
        assert logged_rebound(caplog, key)
        await assert_untouched(s, p, key)
        # The admin puts the method back: the paid order is settled, not cancelled.
        await reload(s, kit.CONFIG)
        assert (await sweep(s.storage, s.methods, now=later())).paid == [key]
        assert (await s.storage.orders.get(key))["status"] == "PROCESSING"
        assert (await s.storage.customers.get(c.id))["cart"] == {}
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_the_return_to_a_method_given_to_another_provider_lands_on_the_site_and_decides_nothing(caplog):
    async with shop() as s:
        p, _c, key = await paid_then_rebound(s)
        back = await kit.return_path(s.storage, key, kit.REDIRECT)
        with caplog.at_level(logging.ERROR):
            r = await s.request("GET", back)
        assert r.status == 302 and r.headers["Location"] == f"http://shop.test/orders/{key}?payment=pending"
        assert logged_rebound(caplog, key)
        await assert_untouched(s, p, key)
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_a_notification_to_a_method_given_to_another_provider_decides_nothing(caplog):
    async with shop() as s:
        p, _c, key = await paid_then_rebound(s)
        with caplog.at_level(logging.ERROR):
            r = await s.request("POST", f"/api/shop/checkout/notify/{kit.REDIRECT}",
                                raw_body=json.dumps({"order": key}).encode(),
                                headers={"X-Test-Signature": "valid"})
        # As for a removed method: an error answer, so the gateway delivers it again later.
        assert r.status == 404 and r.body == {"error": "payment method not found"}
        assert logged_rebound(caplog, key)
        await assert_untouched(s, p, key)
        assert (await s.storage.orders.get(key))["events"] == []
        await assert_stock_invariant(s.storage)
