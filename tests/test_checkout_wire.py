"""Checkout over the wire: PyMongo's async driver against the embedded nx-27017 server."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter

import checkout_fixtures as kit
import pytest
from invariants import assert_stock_invariant
from pymongo import monitoring

from checkout_server.storage import Storage
from checkout_server.testing import TestShop


def wire_shop(uri: str, **options) -> TestShop:
    storage = Storage.connect(uri, f"wire_{secrets.token_hex(4)}", **options)
    return TestShop(config=kit.CONFIG, plugins=[kit], storage=storage)


@pytest.mark.gen_test(timeout=180)
async def test_fifty_customers_and_the_last_ten_units(embedded_uri):
    async with wire_shop(embedded_uri) as s:
        try:
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
        finally:
            await s.storage.close()


@pytest.mark.gen_test(timeout=60)
async def test_two_identical_checkouts_at_once_make_one_order(embedded_uri):
    async with wire_shop(embedded_uri) as s:
        try:
            p = await s.product(stock=5)
            c = await s.customer(cart={p["_id"]: 2})
            answers = await asyncio.gather(c.checkout(kit.REDIRECT, kit.FLAT), c.checkout(kit.REDIRECT, kit.FLAT))
            assert {r.status for r in answers} <= {200, 409} and 200 in {r.status for r in answers}
            assert await s.storage.orders.count({}) == 1
            assert (await s.storage.products.get(p["_id"]))["stock"] == 3
            await assert_stock_invariant(s.storage)
        finally:
            await s.storage.close()


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


@pytest.mark.gen_test(timeout=60)
async def test_database_commands_per_checkout(embedded_uri):
    counter = CommandCounter()
    async with wire_shop(embedded_uri, event_listeners=[counter]) as s:
        try:
            products = [await s.product(f"P{i}", stock=10) for i in range(3)]
            counts = {}
            for flow, method in (("redirect", kit.REDIRECT), ("direct", kit.DIRECT)):
                c = await s.customer(cart={p["_id"]: 1 for p in products})
                counter.names.clear()
                counter.counting = True
                r = await c.checkout(method, kit.FLAT)
                counter.counting = False
                assert r.status == 200, r
                counts[flow] = list(counter.names)
                print(f"\n{flow} checkout of 3 lines: {len(counter.names)} database commands: {counter.names}")
            # One findAndModify authenticates by token AND takes the checkout lock, returning
            # the customer (profile, addresses, cart, last checkout in one document); all
            # products in one find; the order counter; the order insert; the 3 guarded
            # decrements in one bulk update; the order's payment record (a guarded replace
            # from the inserted document, no read); the lock release.
            redirect = counts["redirect"]
            assert redirect.count("find") == 1 and redirect.count("findAndModify") == 2
            assert len(redirect) <= 7
            # Direct: the settled payment in that same replace, then the marker commit (one
            # bulk), the cart cleanup together with the lock release (one update) and the
            # order's `committed` (one replace).
            assert counts["direct"].count("find") == 1
            assert len(counts["direct"]) <= 9
        finally:
            await s.storage.close()


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
            await s.storage.close()
