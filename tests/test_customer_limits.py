"""Limits per customer (`[site]`, docs/checkout.md): what one customer may hold unpaid, and
how many Idempotency-Keys they may have stored."""

from __future__ import annotations

import checkout_fixtures as kit
import pytest
from invariants import assert_stock_invariant

from checkout_server.config import SiteConfig, parse_config


def limited(**site) -> dict:
    return {**kit.CONFIG, "site": {**kit.CONFIG["site"], **site}}


async def place_unpaid_orders(s, c, product_id: int, count: int, quantity: int = 1) -> list[str]:
    """`count` redirect checkouts left unpaid (HOLD), each of a changed cart."""
    keys = []
    for n in range(count):
        await c.request("PUT", f"/api/shop/cart/items/{product_id}", {"quantity": quantity + n})
        r = await c.checkout(kit.REDIRECT, kit.FLAT)
        assert r.status == 200 and "next_step" in r.body, r
        keys.append(r.body["next_step"].rsplit("/", 1)[1])
    return keys


def test_defaults_are_documented_values():
    site = parse_config({}, None).site
    assert (site.unpaid_orders_per_customer, site.unpaid_units_per_customer,
            site.idempotency_keys_per_customer) == (5, 100, 1000)
    assert site == SiteConfig()


@pytest.mark.gen_test
async def test_a_sixth_order_waiting_for_payment_is_refused_naming_the_rule():
    async with kit.shop() as s:
        p = await s.product(stock=100)
        c = await s.customer(cart={p["_id"]: 1})
        await place_unpaid_orders(s, c, p["_id"], 5)
        # A repeat of the unchanged cart still answers its order.
        again = await c.checkout(kit.REDIRECT, kit.FLAT)
        assert again.status == 200 and again.body["next_step"].endswith("ORD-2026-000005")

        await c.request("PUT", f"/api/shop/cart/items/{p['_id']}", {"quantity": 9})
        r = await c.checkout(kit.REDIRECT, kit.FLAT)
        assert r.status == 400, r
        assert list(r.body["fields"]) == ["unpaid_orders_per_customer"]
        assert "unpaid_orders_per_customer = 5" in r.body["error"]
        # Pay on delivery too: whether an order will wait is known only once it started.
        assert (await c.checkout(kit.DIRECT, kit.FLAT)).status == 400
        assert await s.storage.orders.count({}) == 5
        # Another customer is not limited by this one's orders.
        other = await s.customer(cart={p["_id"]: 1})
        assert (await other.checkout(kit.REDIRECT, kit.FLAT)).status == 200
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_orders_that_left_hold_free_their_place():
    async with kit.shop(config=limited(unpaid_orders_per_customer=2)) as s:
        p = await s.product(stock=100)
        c = await s.customer(cart={p["_id"]: 1})
        await place_unpaid_orders(s, c, p["_id"], 2)
        await c.request("PUT", f"/api/shop/cart/items/{p['_id']}", {"quantity": 7})
        assert (await c.checkout(kit.REDIRECT, kit.FLAT)).status == 400
        await s.storage.orders.transition("ORD-2026-000001", {"status": "HOLD"}, {"status": "CANCELLED"})
        assert (await c.checkout(kit.REDIRECT, kit.FLAT)).status == 200


@pytest.mark.gen_test
async def test_units_held_unpaid_are_limited_per_customer():
    async with kit.shop(config=limited(unpaid_units_per_customer=10)) as s:
        p = await s.product(stock=100)
        q = await s.product(stock=100)
        c = await s.customer(cart={p["_id"]: 6})
        assert (await c.checkout(kit.REDIRECT, kit.FLAT)).status == 200
        await c.request("PUT", f"/api/shop/cart/items/{p['_id']}", {"quantity": 3})
        await c.request("POST", "/api/shop/cart/items", {"product": q["_id"], "quantity": 2})
        r = await c.checkout(kit.REDIRECT, kit.FLAT)  # 6 held + 5 in the cart > 10
        assert r.status == 400, r
        assert list(r.body["fields"]) == ["unpaid_units_per_customer"]
        assert "5 units and the 6 held" in r.body["error"]
        await c.request("DELETE", f"/api/shop/cart/items/{q['_id']}")
        r = await c.checkout(kit.REDIRECT, kit.FLAT)  # 6 + 3 <= 10
        assert r.status == 200, r
        assert (await s.storage.products.get(p["_id"]))["stock"] == 91
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_a_limit_is_reported_with_the_other_failing_rules():
    async with kit.shop(config=limited(unpaid_units_per_customer=3)) as s:
        p = await s.product(stock=2)
        c = await s.customer(cart={p["_id"]: 5})
        r = await c.checkout(kit.REDIRECT, kit.FLAT, address=999)
        assert r.status == 400
        assert list(r.body["fields"]) == ["cart", "address", "unpaid_units_per_customer"]


@pytest.mark.gen_test
async def test_stored_idempotency_keys_are_limited_per_customer():
    async with kit.shop(config=limited(idempotency_keys_per_customer=3)) as s:
        p = await s.product(stock=100)
        c = await s.customer(cart={p["_id"]: 1})
        for n in range(3):  # refusals are stored answers too
            r = await c.checkout(kit.REDIRECT, kit.FLAT, address=999, idempotency_key=f"k{n}")
            assert r.status == 400
        r = await c.checkout(kit.REDIRECT, kit.FLAT, idempotency_key="k3")
        assert r.status == 429, r
        assert "at most 3 per customer" in r.body["error"]
        assert r.headers["Content-Type"].startswith("application/json")
        assert await s.storage.orders.count({}) == 0
        assert await s.storage.idempotency.collection.count_documents({"_id": f"{c.id}:k3"}) == 0
        # A stored key still replays; another customer has keys of their own.
        replay = await c.checkout(kit.REDIRECT, kit.FLAT, address=999, idempotency_key="k0")
        assert replay.status == 400 and "not one of your addresses" in replay.body["error"]
        other = await s.customer(cart={p["_id"]: 1})
        assert (await other.checkout(kit.REDIRECT, kit.FLAT, idempotency_key="k3")).status == 200
        # Without a key the customer checks out as ever.
        assert (await c.checkout(kit.REDIRECT, kit.FLAT)).status == 200


@pytest.mark.parametrize("name", ["unpaid_orders_per_customer", "unpaid_units_per_customer",
                                  "idempotency_keys_per_customer"])
@pytest.mark.parametrize("value", [0, -1, True, "5", 1.5])
def test_limits_must_be_positive_integers(name, value):
    from checkout_server.config import ConfigError
    with pytest.raises(ConfigError, match=f"{name}: must be a positive integer"):
        parse_config({"site": {name: value}}, "shop.toml")


@pytest.mark.gen_test
async def test_orders_from_before_the_record_of_unpaid_orders_count_too():
    async with kit.shop() as s:
        p = await s.product(stock=100)
        c = await s.customer(cart={p["_id"]: 1})
        await place_unpaid_orders(s, c, p["_id"], 5)
        # As a checkout before this version left it: no record of the orders on HOLD.
        await s.storage.customers.collection.update_one({"_id": c.id}, {"$unset": {"last_checkout.unpaid": ""}})
        await c.request("PUT", f"/api/shop/cart/items/{p['_id']}", {"quantity": 9})
        r = await c.checkout(kit.REDIRECT, kit.FLAT)
        assert r.status == 400 and list(r.body["fields"]) == ["unpaid_orders_per_customer"], r
