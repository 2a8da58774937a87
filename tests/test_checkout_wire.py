"""Checkout over the wire: the real motor driver against the embedded nx-27017 server."""

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
            s.storage.close()


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
            s.storage.close()


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
            # The customer is read by token, then once more as the checkout lock is taken
            # (profile, addresses, cart, last checkout in one document); all products in one
            # find; the 3 guarded decrements are one bulk update. The other find is the order
            # transition's read (storage.orders.transition is read + guarded replace).
            redirect = counts["redirect"]
            assert redirect.count("find") == 3 and redirect.count("findAndModify") == 2
            assert len(redirect) <= 9
            # Direct adds the settlement: commit markers (one bulk), cart cleanup, order commit.
            assert len(counts["direct"]) <= 14
        finally:
            s.storage.close()
