"""Amounts of money above MAX_MONEY: a provider's absurd quote and a cart too expensive to store."""

from __future__ import annotations

import secrets
import sys

import checkout_fixtures as kit
import pytest

from checkout_server.plugin.hookspecs import hookimpl
from checkout_server.plugin.providers import MAX_MONEY, ShippingProvider
from checkout_server.storage import Storage
from checkout_server.testing import TestShop

HUGE_QUOTE = {"cost": 2**63}  # what `HugeQuote` answers; each test sets it
HUGE = 9


class HugeQuote(ShippingProvider):
    name = "test_huge_quote"

    def quote(self, cart, address):
        return HUGE_QUOTE["cost"]


@hookimpl
def register_shipping_providers(register):
    register(HugeQuote)


CONFIG = {**kit.CONFIG, "shipping_methods": [*kit.CONFIG["shipping_methods"],
                                             {"id": HUGE, "provider": "test_huge_quote", "title": "Huge"}]}


def _shop(storage=None) -> TestShop:
    return TestShop(config=CONFIG, plugins=[kit, sys.modules[__name__]], storage=storage)


@pytest.fixture(params=["mongomock", "nx"])
def storage(request, io_loop):
    if request.param == "mongomock":
        yield None
        return
    storage = Storage.connect(request.getfixturevalue("embedded_uri"), f"money_{secrets.token_hex(4)}")
    yield storage
    io_loop.run_sync(storage.close)  # the test's loop, which the client ran on


@pytest.mark.parametrize("cost", [2**63, 2**64 + 1, MAX_MONEY + 1])
@pytest.mark.gen_test(timeout=60)
async def test_a_quote_above_max_money_makes_the_method_unavailable_not_a_500(storage, cost):
    HUGE_QUOTE["cost"] = cost
    async with _shop(storage) as s:
        p = await s.product(stock=10)
        c = await s.customer(cart={p["_id"]: 2})
        r = await c.request("GET", f"/api/shop/checkout/methods?address={c.address_id}&include_unavailable=1")
        assert r.status == 200
        huge = next(m for m in r.body["shipping_methods"] if m["id"] == HUGE)
        assert huge.get("cost") is None and huge["reason"] == "this method is unavailable right now"
        r = await c.checkout(kit.DIRECT, HUGE)
        assert r.status == 400 and "shipping_method" in r.body["fields"], r
        assert (await s.storage.products.get(p["_id"]))["stock"] == 10
        assert await s.storage.orders.count({}) == 0


@pytest.mark.gen_test(timeout=60)
async def test_a_quote_of_exactly_max_money_is_a_price(storage):
    HUGE_QUOTE["cost"] = MAX_MONEY
    async with _shop(storage) as s:
        p = await s.product(price=0, stock=10)
        c = await s.customer(cart={p["_id"]: 1})
        r = await c.checkout(kit.DIRECT, HUGE)
        assert r.status == 200, r
        order = await s.storage.orders.get(r.body["order_key"])
        assert order["total"] == MAX_MONEY


@pytest.mark.gen_test(timeout=60)
async def test_a_cart_whose_total_would_exceed_max_money_is_refused_with_a_400(storage):
    async with _shop(storage) as s:
        p = await s.product("Yacht", price=MAX_MONEY - 500, stock=10)  # + 500 flat shipping
        c = await s.customer(cart={p["_id"]: 2})
        r = await c.checkout(kit.DIRECT, kit.FLAT)
        assert r.status == 400, r
        assert "maximum" in r.body["fields"]["cart"][0] and "maximum" in r.body["error"]
        assert (await s.storage.products.get(p["_id"]))["stock"] == 10
        assert await s.storage.orders.count({}) == 0
        # The largest total there may be still goes through.
        r = await c.request("PUT", f"/api/shop/cart/items/{p['_id']}", {"quantity": 1})
        assert r.status == 200
        r = await c.checkout(kit.DIRECT, kit.FLAT)
        assert r.status == 200, r
        assert (await s.storage.orders.get(r.body["order_key"]))["total"] == MAX_MONEY


def test_the_conformance_check_refuses_a_quote_above_max_money():
    from checkout_server.testing import check_shipping_provider

    HUGE_QUOTE["cost"] = MAX_MONEY + 1
    with pytest.raises(AssertionError, match=r"HugeQuote.quote\(\) must return at most MAX_MONEY"):
        check_shipping_provider(HugeQuote)
