"""Checkout over the wire: PyMongo's async driver against the embedded nx-27017 server."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import Counter

import checkout_fixtures as kit
import pytest
from invariants import assert_stock_invariant
from pymongo import monitoring

from checkout_server.stock import commits
from checkout_server.storage import Storage
from checkout_server.testing import TestShop


@contextlib.asynccontextmanager
async def wire_shop(uri: str, **options):
    """A TestShop on its own database of the nx-27017 server; the client closed after the shop."""
    storage = Storage.connect(uri, f"wire_{secrets.token_hex(4)}", **options)
    try:
        async with TestShop(config=kit.CONFIG, plugins=[kit], storage=storage) as shop:
            yield shop
    finally:
        await storage.close()


@pytest.mark.gen_test(timeout=180)
async def test_fifty_customers_and_the_last_ten_units(embedded_uri):
    async with wire_shop(embedded_uri) as s:
        last = await s.product("Last units", price=1000, stock=10)
        customers = [await s.customer(cart={last["_id"]: 1}) for _ in range(50)]
        answers = await asyncio.gather(*[c.checkout(kit.DIRECT, kit.FLAT) for c in customers])
        statuses = Counter(r.status for r in answers)
        assert statuses == {200: 10, 400: 40}, statuses
        for r in answers:
            if r.status == 400:
                assert "Last units" in r.body["error"] and "out of stock" in r.body["error"], r
        product = await s.storage.products.get(last["_id"])
        assert product["stock"] == 0  # 0 oversold
        assert await s.storage.orders.count({"status": "PROCESSING"}) == 10
        assert await s.storage.orders.count({}) == 10
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test(timeout=60)
async def test_two_identical_checkouts_at_once_make_one_order(embedded_uri):
    async with wire_shop(embedded_uri) as s:
        p = await s.product(stock=5)
        c = await s.customer(cart={p["_id"]: 2})
        answers = await asyncio.gather(c.checkout(kit.REDIRECT, kit.FLAT), c.checkout(kit.REDIRECT, kit.FLAT))
        assert {r.status for r in answers} <= {200, 409} and 200 in {r.status for r in answers}
        assert await s.storage.orders.count({}) == 1
        assert (await s.storage.products.get(p["_id"]))["stock"] == 3
        await assert_stock_invariant(s.storage)


class CommandCounter(monitoring.CommandListener):
    def __init__(self):
        self.names: list[str] = []
        self.counting = False

    def started(self, event):
        if self.counting:
            self.names.append(event.command_name)

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass

    @contextlib.contextmanager
    def count(self):
        self.names.clear()
        self.counting = True
        try:
            yield self.names
        finally:
            self.counting = False


@pytest.mark.parametrize("lines", [1, 12])
@pytest.mark.gen_test(timeout=120)
async def test_a_checkout_takes_at_most_six_round_trips(embedded_uri, monkeypatch, lines):
    # The batch that finishes paid orders waits for the test: what it sends is counted apart.
    monkeypatch.setattr(commits, "FLUSH_DELAY", 3600)
    counter = CommandCounter()
    async with wire_shop(embedded_uri, event_listeners=[counter]) as s:
        products = [await s.product(f"P{i}", stock=10) for i in range(lines)]
        for flow, method in (("redirect", kit.REDIRECT), ("direct", kit.DIRECT)):
            c = await s.customer(cart={p["_id"]: 1 for p in products})
            with counter.count() as sent:
                r = await c.checkout(method, kit.FLAT)
            assert r.status == 200, r
            print(f"\n{flow} checkout of {lines} lines: {len(sent)} database commands: {sent}")
            # One findAndModify authenticates by token AND takes the checkout lock, returning
            # the customer (profile, addresses, cart, last checkout in one document); one find
            # reads every product; the order is inserted with its intent (`reserving`; its
            # number from a block taken ahead); one bulk takes every line; the order is
            # written once with its payment (redirect: HOLD; direct: PROCESSING); one customer
            # update releases the lock (direct: with the ordered lines out of the cart).
            assert sent == ["findAndModify", "find", "insert", "update", "update", "update"], sent
        order = (await s.storage.orders.find({"status": "PROCESSING"}))[0]
        assert order["stock"] == "held"  # its markers and `committed` are the batch's
        with counter.count() as sent:
            await commits.flush(s.storage)
        # The batch: one bulk drops the markers of every order in it, one update marks them all.
        assert sent == ["update", "update"], sent
        assert (await s.storage.orders.get(order["_id"]))["stock"] == "committed"
        for p in products:  # the paid order's markers are gone; the redirect order (HOLD) keeps its own
            assert list((await s.storage.products.get(p["_id"]))["holds"]) != [order["_id"]]
            assert len((await s.storage.products.get(p["_id"]))["holds"]) == 1
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test(timeout=120)
async def test_paid_orders_are_finished_many_per_batch(embedded_uri, monkeypatch):
    monkeypatch.setattr(commits, "FLUSH_DELAY", 3600)
    counter = CommandCounter()
    async with wire_shop(embedded_uri, event_listeners=[counter]) as s:
        products = [await s.product(f"P{i}", stock=100) for i in range(4)]
        customers = [await s.customer(cart={p["_id"]: 2 for p in products}) for _ in range(8)]
        answers = await asyncio.gather(*[c.checkout(kit.DIRECT, kit.FLAT) for c in customers])
        assert {r.status for r in answers} == {200}
        with counter.count() as sent:
            await commits.flush(s.storage)
        assert sent == ["update", "update"], sent  # eight orders, two round trips
        assert await s.storage.orders.count({"stock": "committed"}) == 8
        assert [(await s.storage.products.get(p["_id"]))["holds"] for p in products] == [{}] * 4
        assert [(await s.storage.products.get(p["_id"]))["stock"] for p in products] == [84] * 4
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test(timeout=60)
async def test_database_commands_per_paid_return(embedded_uri):
    from checkout_server.plugin.providers import PaymentCheck, PaymentState

    counter = CommandCounter()
    async with wire_shop(embedded_uri, event_listeners=[counter]) as s:
        try:
            products = [await s.product(f"P{i}", stock=10) for i in range(3)]
            c = await s.customer(cart={p["_id"]: 1 for p in products})
            key = (await c.checkout(kit.REDIRECT, kit.FLAT)).body["next_step"].rsplit("/", 1)[1]
            order = await s.storage.orders.get(key)
            kit.GATEWAY_STATE[key] = PaymentCheck(PaymentState.PAID, amount=order["total"], currency="EUR")
            back = await kit.return_path(s.storage, key, kit.REDIRECT)
            counter.names.clear()
            counter.counting = True
            r = await s.request("GET", back)
            counter.counting = False
            assert r.status == 302 and r.headers["Location"].endswith("payment=paid")
            print(f"\npaid return: {len(counter.names)} database commands: {counter.names}")
            # The order's read; HOLD -> PROCESSING written from it; the markers (one bulk);
            # the cart (one guarded update); `committed` written from the previous write.
            assert counter.names == ["find", "update", "update", "update", "update"]
            assert (await s.storage.customers.get(c.id))["cart"] == {}
            await assert_stock_invariant(s.storage)
        finally:
            kit.GATEWAY_STATE.clear()
