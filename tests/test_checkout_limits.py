"""The checkout's limits: a provider's refusal, a payment start that takes too long, the lock.

- A `ProviderError` from `start` (a gateway's 4xx, an amount it cannot take) is a 503 with
  its message; the order is cancelled, its units back, the cart as it was.
- A payment start is cut off at `checkout_lock.start_deadline()`, well within the checkout lock,
  and gateway timeouts are capped so that a start's calls fit in it: the lock never lapses
  under a live checkout.
- A checkout releases only its own lock, never one taken after its own lapsed.
"""

from __future__ import annotations

import asyncio

import checkout_fixtures as kit
import pytest
from invariants import assert_stock_invariant
from marshmallow import ValidationError

from checkout_server.checkout import lock as checkout_lock
from checkout_server.plugin import gateway_http as gatewayhttp
from checkout_server.plugin.hookspecs import hookimpl
from checkout_server.plugin.providers import (
    PaymentProvider,
    PaymentStart,
    ProviderError,
)
from checkout_server.stock import reservations
from checkout_server.testing import TestShop

# Gated starts: each waits for its order's gate; ENTERED tells the test a start began.
GATES: dict[str, asyncio.Event] = {}
ENTERED: list[asyncio.Queue] = []


class RefusingPay(PaymentProvider):
    name = "test_refusing"
    flow = "redirect"

    async def start(self, order, urls):
        raise ProviderError("the gateway refused the request: amount 25.00 EUR is below the minimum 30.00")


class GatedPay(PaymentProvider):
    name = "test_gated"
    flow = "redirect"

    async def start(self, order, urls):
        GATES[order.order_key] = asyncio.Event()
        ENTERED[0].put_nowait(order.order_key)
        await GATES[order.order_key].wait()
        return PaymentStart(redirect_url=f"{kit.GATEWAY}/pay/{order.order_key}", reference=order.order_key)


class Plugins:
    @hookimpl
    def register_payment_providers(register):
        register(RefusingPay)
        register(GatedPay)


REFUSING, GATED = 10, 11
CONFIG = {**kit.CONFIG, "payment_methods": [
    *kit.CONFIG["payment_methods"],
    {"id": REFUSING, "provider": "test_refusing", "title": "Refusing gateway"},
    {"id": GATED, "provider": "test_gated", "title": "Slow gateway"}]}


@pytest.fixture(autouse=True)
def gates():
    GATES.clear()
    ENTERED[:] = [asyncio.Queue()]
    yield
    for gate in GATES.values():
        gate.set()


def shop() -> TestShop:
    return TestShop(config=CONFIG, plugins=[kit, Plugins])


@pytest.mark.gen_test
async def test_a_provider_refusing_the_payment_is_a_503_with_its_message_that_loses_nothing():
    async with shop() as s:
        p = await s.product(price=1000, stock=5)
        c = await s.customer(cart={p["_id"]: 2})
        for key in (None, "k-1", "k-1"):  # a refusal is not stored as the key's answer
            r = await c.checkout(REFUSING, kit.FLAT, **({"idempotency_key": key} if key else {}))
            assert r.status == 503, r
            assert "amount 25.00 EUR is below the minimum 30.00" in r.body["error"]
            assert "payment method 10: Refusing gateway" in r.body["error"]
        orders = await s.storage.orders.find({})
        assert len(orders) == 3 and {o["status"] for o in orders} == {"CANCELLED"}
        assert all("amount 25.00 EUR" in o["history"][-1]["reason"] for o in orders)
        assert (await s.storage.products.get(p["_id"]))["stock"] == 5
        assert (await s.storage.customers.get(c.id))["cart"] == {str(p["_id"]): 2}
        assert (await c.checkout(kit.DIRECT, kit.FLAT)).status == 200  # not locked out
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_a_start_slower_than_the_deadline_is_cut_off_within_the_lock(monkeypatch):
    monkeypatch.setattr(checkout_lock, "LOCK_SECONDS", 0.3)  # the deadline is then 0.2 s
    async with shop() as s:
        p = await s.product(price=1000, stock=5)
        c = await s.customer(cart={p["_id"]: 2})
        first = asyncio.ensure_future(c.checkout(GATED, kit.FLAT))
        await ENTERED[0].get()  # the gateway is slow to answer...
        second = await c.checkout(GATED, kit.FLAT)  # ...and the shopper taps again
        assert second.status == 409
        first = await first  # the gate never opens: cut off at the deadline, lock still ours
        assert first.status == 503 and "payment service" in first.body["error"]
        [order] = await s.storage.orders.find({})
        assert order["status"] == "CANCELLED" and "0.2 s" in order["history"][-1]["reason"]
        assert (await s.storage.products.get(p["_id"]))["stock"] == 5
        assert (await s.storage.customers.get(c.id))["checkout_lock"] == 0.0
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_a_checkout_whose_lock_lapsed_does_not_release_the_next_ones(monkeypatch):
    async with shop() as s:
        p = await s.product(price=1000, stock=5)
        c = await s.customer(cart={p["_id"]: 2})
        first = asyncio.ensure_future(c.checkout(GATED, kit.FLAT))
        first_key = await ENTERED[0].get()
        # Past the first's lock (say the database stalled): another checkout may take it.
        kit.move_clock(monkeypatch, checkout_lock.LOCK_SECONDS + 1)
        second = asyncio.ensure_future(c.checkout(GATED, kit.FLAT))
        second_key = await ENTERED[0].get()
        monkeypatch.undo()
        GATES[first_key].set()
        assert (await first).status == 200
        # The first's release left the second's lock alone: a third checkout is still refused.
        assert (await c.checkout(GATED, kit.FLAT)).status == 409
        GATES[second_key].set()
        assert (await second).status == 200
        assert (await s.storage.customers.get(c.id))["checkout_lock"] == 0.0
        await assert_stock_invariant(s.storage)


def test_gateway_calls_of_a_payment_start_fit_in_the_checkout_lock():
    assert gatewayhttp.GatewaySettings().load({"timeout": gatewayhttp.MAX_TIMEOUT})["timeout"] == 15.0
    with pytest.raises(ValidationError):
        gatewayhttp.GatewaySettings().load({"timeout": gatewayhttp.MAX_TIMEOUT + 1})
    budget = gatewayhttp.MAX_CALLS_PER_START * gatewayhttp.MAX_TIMEOUT
    assert budget <= checkout_lock.start_deadline() <= checkout_lock.LOCK_SECONDS * 2 / 3
    assert checkout_lock.LOCK_SECONDS < reservations.STALE_AFTER.total_seconds()
