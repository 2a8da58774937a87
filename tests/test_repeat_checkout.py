"""A repeat checkout of an unchanged cart: never a second order while the first may be paid.

CONTRACT.md: a second checkout of an unchanged cart whose order is still HOLD creates no
second order and answers with that order's next_step, however little of its hold is left;
a late payment is settled by the sweeper, which asks the gateway before it cancels. A repeat
answers only bodies the normal path accepts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import checkout_fixtures as kit
import pytest
from invariants import assert_stock_invariant

from checkout_server.payments.sweeper import sweep
from checkout_server.plugin.providers import PaymentCheck, PaymentState


@pytest.fixture(autouse=True)
def fresh_gateway():
    kit.GATEWAY_STATE.clear()
    kit.CALLS.clear()


shop = kit.shop


async def first_checkout(s, stock=5, quantity=2):
    p = await s.product(price=1000, stock=stock)
    c = await s.customer(cart={p["_id"]: quantity})
    r = await c.checkout(kit.REDIRECT, kit.FLAT)
    assert r.status == 200, r
    return p, c, r, r.body["next_step"].rsplit("/", 1)[1]


async def near_expiry(s, key: str, left: timedelta = timedelta(minutes=1)) -> None:
    order = await s.storage.orders.get(key)
    await s.storage.orders.transition(key, {"status": "HOLD"}, {"hold_until": datetime.now(UTC) + left},
                                      current=order)


# -- a HOLD order answers its repeats until it leaves HOLD

@pytest.mark.gen_test
@pytest.mark.parametrize("left", [timedelta(minutes=1), timedelta(minutes=-3)], ids=["near-expiry", "expired"])
async def test_a_repeat_answers_the_hold_order_whatever_time_it_has_left(left):
    async with shop() as s:
        p, c, r1, key = await first_checkout(s)
        await near_expiry(s, key, left)
        r = await c.checkout(kit.REDIRECT, kit.FLAT)
        assert r.status == 200 and r.body == r1.body
        assert ("check", key) not in kit.CALLS  # nothing asked, nothing ended early
        assert await s.storage.orders.count({}) == 1
        assert (await s.storage.products.get(p["_id"]))["stock"] == 3  # held once
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_an_expired_hold_paid_late_is_settled_not_charged_twice():
    async with shop() as s:
        p, c, r1, key = await first_checkout(s)
        await near_expiry(s, key, timedelta(minutes=-3))
        # The shopper pays the page a repeat sent them back to; their return is lost.
        assert (await c.checkout(kit.REDIRECT, kit.FLAT)).body == r1.body
        kit.GATEWAY_STATE[key] = PaymentCheck(PaymentState.PAID, amount=2500, currency="EUR", reference=f"ref-{key}")
        report = await sweep(s.storage, s.methods)
        assert report.cancelled == [] and (await s.storage.orders.get(key))["status"] == "PROCESSING"
        assert (await s.storage.customers.get(c.id))["cart"] == {}
        r = await c.checkout(kit.REDIRECT, kit.FLAT)  # nothing left to buy twice
        assert r.status == 400 and r.body["fields"]["cart"] == ["your cart is empty"]
        assert await s.storage.orders.count({}) == 1
        assert (await s.storage.products.get(p["_id"]))["stock"] == 3  # sold once
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_with_a_five_minute_hold_a_retry_answers_the_same_order():
    async with shop(config={**kit.CONFIG, "site": {**kit.CONFIG["site"], "hold_minutes": 5}}) as s:
        p, c, r1, key = await first_checkout(s)
        r2 = await c.checkout(kit.REDIRECT, kit.FLAT)  # a lost response, retried at once
        assert r2.status == 200 and r2.body == r1.body
        assert ("check", key) not in kit.CALLS
        assert await s.storage.orders.count({}) == 1
        assert (await s.storage.products.get(p["_id"]))["stock"] == 3  # held once
        await near_expiry(s, key, timedelta(seconds=30))
        assert (await c.checkout(kit.REDIRECT, kit.FLAT)).body == r1.body
        await assert_stock_invariant(s.storage)


# -- a repeat answers only what the normal path would accept

@pytest.mark.gen_test
async def test_a_repeat_with_an_address_or_method_the_normal_path_refuses_is_400():
    async with shop() as s:
        p, c, r1, _key = await first_checkout(s)
        other = await s.customer()
        cases = [
            ({"address": other.address_id}, {"address": [f"address {other.address_id} is not one of your addresses"]}),
            ({"payment": 77}, {"payment_method": ["payment method 77 is not available"]}),
            ({"payment": kit.INACTIVE_PAYMENT},
             {"payment_method": [f"payment method {kit.INACTIVE_PAYMENT} is not available"]}),
            ({"shipping": kit.INACTIVE_SHIPPING},
             {"shipping_method": [f"shipping method {kit.INACTIVE_SHIPPING} is not available"]}),
        ]
        for change, fields in cases:
            r = await c.checkout(change.get("payment", kit.REDIRECT), change.get("shipping", kit.FLAT),
                                 address=change.get("address"))
            assert r.status == 400 and r.body["fields"] == fields, (change, r.body)
            assert r.body["error"] == next(iter(fields.values()))[0]
        r = await c.checkout(77, 88, address=987654)
        assert r.status == 400 and set(r.body["fields"]) == {"address", "payment_method", "shipping_method"}
        # Nothing was placed, and a valid repeat (other notes, even) still answers the order.
        assert await s.storage.orders.count({}) == 1
        assert (await c.checkout(kit.REDIRECT, kit.FLAT, notes="ring twice")).body == r1.body
        assert (await s.storage.products.get(p["_id"]))["stock"] == 3
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_a_repeat_does_not_check_stock_again():
    async with shop() as s:
        p, c, r1, _key = await first_checkout(s, stock=2, quantity=2)  # the order holds the last units
        assert (await s.storage.products.get(p["_id"]))["stock"] == 0
        r = await c.checkout(kit.REDIRECT, kit.FLAT)
        assert r.status == 200 and r.body == r1.body
