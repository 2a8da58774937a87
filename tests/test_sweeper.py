"""Hold expiry: overdue HOLD orders are settled if paid, else cancelled with units back."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import checkout_fixtures as kit
import pytest
from invariants import assert_stock_invariant

from checkout_server.methods.table import MethodTable
from checkout_server.payments.sweeper import Sweeper, sweep
from checkout_server.plugin.hookspecs import hookimpl
from checkout_server.plugin.providers import (
    PaymentCheck,
    PaymentProvider,
    PaymentStart,
    PaymentState,
)
from checkout_server.testing import TestShop


@pytest.fixture(autouse=True)
def fresh_gateway():
    kit.GATEWAY_STATE.clear()


shop = kit.shop


async def hold(s, stock=5, quantity=2):
    p = await s.product(price=1000, stock=stock)
    c = await s.customer(cart={p["_id"]: quantity})
    key = (await c.checkout(kit.REDIRECT, kit.FLAT)).body["next_step"].rsplit("/", 1)[1]
    return p, c, key


def later() -> datetime:
    """Past a hold placed now: computed at call time, not when the module was imported."""
    return datetime.now(UTC) + timedelta(minutes=31)


@pytest.mark.gen_test
async def test_unpaid_hold_is_cancelled_after_hold_minutes():
    async with shop() as s:
        p, _c, key = await hold(s)
        assert (await sweep(s.storage, s.methods)).cancelled == []  # not due yet
        report = await sweep(s.storage, s.methods, now=later())
        assert report.cancelled == [key]
        order = await s.storage.orders.get(key)
        assert order["status"] == "CANCELLED" and "within 30 minutes" in order["history"][-1]["reason"]
        assert (await s.storage.products.get(p["_id"]))["stock"] == 5
        assert (await sweep(s.storage, s.methods, now=later())).cancelled == []  # once
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_paid_hold_is_settled_not_cancelled():
    async with shop() as s:
        _p, c, key = await hold(s)
        kit.GATEWAY_STATE[key] = PaymentCheck(PaymentState.PAID, amount=2500, currency="EUR")
        report = await sweep(s.storage, s.methods, now=later())
        assert report.paid == [key]
        assert (await s.storage.orders.get(key))["status"] == "PROCESSING"
        assert (await s.storage.customers.get(c.id))["cart"] == {}
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_gateway_outage_defers_expiry():
    async with shop() as s:
        _p, _c, key = await hold(s)
        kit.GATEWAY_STATE[key] = "down"
        report = await sweep(s.storage, s.methods, now=later())
        assert report.deferred == [key] and report.cancelled == []
        assert (await s.storage.orders.get(key))["status"] == "HOLD"
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_sweeper_task_starts_and_stops():
    async with shop() as s:
        sweeper = Sweeper(s.storage, s.app.method_registry, interval=3600)
        sweeper.start()
        await sweeper.stop()
        assert s.app.sweeper is not None and s.app.reconciler is not None


# -- what expiry never cancels: a payment that may still complete

class NoCheckPay(PaymentProvider):
    """A redirect provider that cannot be asked (does not override `check`)."""

    name = "test_no_check"
    flow = "redirect"

    async def start(self, order, urls):
        return PaymentStart(redirect_url=f"{kit.GATEWAY}/blind/{order.order_key}", reference=order.order_key)


class GarbageCheckPay(NoCheckPay):
    name = "test_garbage_check"

    async def check(self, order):
        return "paid, probably"


class MorePlugins:
    @hookimpl
    def register_payment_providers(register):
        register(NoCheckPay)
        register(GarbageCheckPay)


NO_CHECK, GARBAGE_CHECK = 8, 9
MORE_CONFIG = {**kit.CONFIG, "payment_methods": [
    *kit.CONFIG["payment_methods"],
    {"id": NO_CHECK, "provider": "test_no_check", "title": "Cannot be asked"},
    {"id": GARBAGE_CHECK, "provider": "test_garbage_check", "title": "Answers garbage"}]}


@pytest.mark.gen_test
async def test_a_payment_still_pending_at_its_gateway_keeps_the_hold_until_decided(caplog):
    async with shop() as s:
        p, c, key = await hold(s)
        # Stripe: session complete, SEPA debit processing; PayPal: capture PENDING.
        kit.GATEWAY_STATE[key] = PaymentCheck(PaymentState.PENDING, detail="capture pending")
        with caplog.at_level(logging.INFO, logger="checkout_server.payments.sweeper"):
            report = await sweep(s.storage, s.methods, now=later())
        assert report.deferred == [key] and report.cancelled == []
        assert any(key in r.getMessage() and "pending" in r.getMessage() and r.levelno >= logging.INFO
                   for r in caplog.records)
        assert (await s.storage.orders.get(key))["status"] == "HOLD"
        assert (await s.storage.products.get(p["_id"]))["stock"] == 3
        # Days later the money arrives: the next sweep settles the order as paid.
        kit.GATEWAY_STATE[key] = PaymentCheck(PaymentState.PAID, amount=2500, currency="EUR")
        assert (await sweep(s.storage, s.methods, now=later())).paid == [key]
        assert (await s.storage.orders.get(key))["status"] == "PROCESSING"
        assert (await s.storage.customers.get(c.id))["cart"] == {}
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_an_expired_hold_whose_provider_cannot_be_asked_is_cancelled():
    async with TestShop(config=MORE_CONFIG, plugins=[kit, MorePlugins]) as s:
        p = await s.product(price=1000, stock=5)
        c = await s.customer(cart={p["_id"]: 2})
        r = await c.checkout(NO_CHECK, kit.FLAT)
        key = r.body["next_step"].rsplit("/", 1)[1]
        report = await sweep(s.storage, s.methods, now=later())
        assert report.cancelled == [key]
        order = await s.storage.orders.get(key)
        assert order["status"] == "CANCELLED" and "within 30 minutes" in order["history"][-1]["reason"]
        assert (await s.storage.products.get(p["_id"]))["stock"] == 5
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_a_check_answering_garbage_keeps_the_hold():
    async with TestShop(config=MORE_CONFIG, plugins=[kit, MorePlugins]) as s:
        p = await s.product(price=1000, stock=5)
        c = await s.customer(cart={p["_id"]: 2})
        key = (await c.checkout(GARBAGE_CHECK, kit.FLAT)).body["next_step"].rsplit("/", 1)[1]
        report = await sweep(s.storage, s.methods, now=later())
        assert report.deferred == [key] and (await s.storage.orders.get(key))["status"] == "HOLD"


@pytest.mark.gen_test
async def test_a_hold_whose_method_was_removed_by_a_reload_is_kept_and_logged(caplog):
    async with shop() as s:
        p, _c, key = await hold(s)
        kit.GATEWAY_STATE[key] = PaymentCheck(PaymentState.PAID, amount=2500, currency="EUR")
        old = s.methods
        without = MethodTable(old.config, {i: m for i, m in old.payment.items() if i != kit.REDIRECT},
                              old.shipping)
        with caplog.at_level(logging.ERROR, logger="checkout_server.payments.sweeper"):
            report = await sweep(s.storage, without, now=later())
        assert report.deferred == [key] and report.cancelled == [] and report.paid == []
        assert any(r.levelno == logging.ERROR and key in r.getMessage() and f"method {kit.REDIRECT}" in r.getMessage()
                   for r in caplog.records)
        assert (await s.storage.orders.get(key))["status"] == "HOLD"
        assert (await s.storage.products.get(p["_id"]))["stock"] == 3
        # The method is configured again: the paid order is settled, not cancelled.
        assert (await sweep(s.storage, old, now=later())).paid == [key]
        await assert_stock_invariant(s.storage)
