"""Hold expiry: overdue HOLD orders are settled if paid, else cancelled with units back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import checkout_fixtures as kit
import pytest
from invariants import assert_stock_invariant

from checkout_server.providers import PaymentCheck, PaymentState
from checkout_server.sweeper import Sweeper, sweep
from checkout_server.testing import TestShop


@pytest.fixture(autouse=True)
def fresh_gateway():
    kit.GATEWAY_STATE.clear()


def shop() -> TestShop:
    return TestShop(config=kit.CONFIG, plugins=[kit])


async def hold(s, stock=5, quantity=2):
    p = await s.product(price=1000, stock=stock)
    c = await s.customer(cart={p["_id"]: quantity})
    key = (await c.checkout(kit.REDIRECT, kit.FLAT)).body["next_step"].rsplit("/", 1)[1]
    return p, c, key


LATER = datetime.now(UTC) + timedelta(minutes=31)


@pytest.mark.gen_test
async def test_unpaid_hold_is_cancelled_after_hold_minutes():
    async with shop() as s:
        p, _c, key = await hold(s)
        assert (await sweep(s.storage, s.methods)).cancelled == []  # not due yet
        report = await sweep(s.storage, s.methods, now=LATER)
        assert report.cancelled == [key]
        order = await s.storage.orders.get(key)
        assert order["status"] == "CANCELLED" and "within 30 minutes" in order["history"][-1]["reason"]
        assert (await s.storage.products.get(p["_id"]))["stock"] == 5
        assert (await sweep(s.storage, s.methods, now=LATER)).cancelled == []  # once
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_paid_hold_is_settled_not_cancelled():
    async with shop() as s:
        _p, c, key = await hold(s)
        kit.GATEWAY_STATE[key] = PaymentCheck(PaymentState.PAID, amount=2500, currency="EUR")
        report = await sweep(s.storage, s.methods, now=LATER)
        assert report.paid == [key]
        assert (await s.storage.orders.get(key))["status"] == "PROCESSING"
        assert (await s.storage.customers.get(c.id))["cart"] == {}
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_gateway_outage_defers_expiry():
    async with shop() as s:
        _p, _c, key = await hold(s)
        kit.GATEWAY_STATE[key] = "down"
        report = await sweep(s.storage, s.methods, now=LATER)
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
