"""A repeat checkout of an unchanged cart: never a second order while the first may be paid.

Review 3: close to its hold's expiry a repeat placed a new order without asking about the
old one (a shopper who paid but whose return was lost paid twice); with `hold_minutes <= 5`
every retry did; and a repeat answered bodies the normal path refuses.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import checkout_fixtures as kit
import pytest
from invariants import assert_stock_invariant

from checkout_server import repeat_checkout
from checkout_server.methods import MethodTable
from checkout_server.providers import PaymentCheck, PaymentState

STILL_PROCESSING = ("your previous payment for this cart is still being processed; "
                    "try again in a few minutes")


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


# -- close to expiry: ask the old order's gateway first

@pytest.mark.gen_test
async def test_a_repeat_near_expiry_of_an_order_paid_at_its_gateway_answers_that_order():
    async with shop() as s:
        p, c, _r, key = await first_checkout(s)
        # Paid at the gateway; the shopper's return never arrived.
        kit.GATEWAY_STATE[key] = PaymentCheck(PaymentState.PAID, amount=2500, currency="EUR", reference=f"ref-{key}")
        await near_expiry(s, key)
        r = await c.checkout(kit.REDIRECT, kit.FLAT)
        assert r.status == 200 and r.body == {"order_key": key}
        assert await s.storage.orders.count({}) == 1
        order = await s.storage.orders.get(key)
        assert order["status"] == "PROCESSING" and order["stock"] == "committed"
        assert (await s.storage.customers.get(c.id))["cart"] == {}
        assert (await s.storage.products.get(p["_id"]))["stock"] == 3  # sold once
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
@pytest.mark.parametrize("gateway", [PaymentCheck(PaymentState.PENDING, detail="capture pending"), "down"],
                         ids=["pending", "unreachable"])
async def test_a_repeat_near_expiry_whose_payment_may_still_complete_is_409(gateway):
    async with shop() as s:
        p, c, r1, key = await first_checkout(s)
        kit.GATEWAY_STATE[key] = gateway
        await near_expiry(s, key)
        r = await c.checkout(kit.REDIRECT, kit.FLAT)
        assert r.status == 409 and r.body == {"error": STILL_PROCESSING}
        assert await s.storage.orders.count({}) == 1
        assert (await s.storage.orders.get(key))["status"] == "HOLD"
        assert (await s.storage.products.get(p["_id"]))["stock"] == 3
        # Once the gateway says it will never be paid, the next repeat places a new order.
        kit.GATEWAY_STATE[key] = PaymentCheck(PaymentState.FAILED)
        r2 = await c.checkout(kit.REDIRECT, kit.FLAT)
        assert r2.status == 200 and r2.body != r1.body
        assert (await s.storage.orders.get(key))["status"] == "CANCELLED"
        assert (await s.storage.products.get(p["_id"]))["stock"] == 3  # held once, by the new order
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_a_repeat_near_expiry_whose_method_nobody_can_ask_is_409():
    async with shop() as s:
        p, c, _r, key = await first_checkout(s)
        kit.GATEWAY_STATE[key] = PaymentCheck(PaymentState.PAID, amount=2500, currency="EUR")
        await near_expiry(s, key)
        old = s.methods
        s.app.method_registry.table = MethodTable(
            old.config, {i: m for i, m in old.payment.items() if i != kit.REDIRECT}, old.shipping)
        r = await c.checkout(kit.DIRECT, kit.FLAT)  # the same cart, another (configured) method
        assert r.status == 409 and r.body == {"error": STILL_PROCESSING}
        assert await s.storage.orders.count({}) == 1 and (await s.storage.orders.get(key))["status"] == "HOLD"
        assert (await s.storage.products.get(p["_id"]))["stock"] == 3


def test_a_short_hold_is_reused_for_half_its_length():
    assert repeat_checkout.reuse_hold_min_left(30) == timedelta(minutes=5)
    assert repeat_checkout.reuse_hold_min_left(10) == timedelta(minutes=5)
    assert repeat_checkout.reuse_hold_min_left(5) == timedelta(minutes=2, seconds=30)
    assert repeat_checkout.reuse_hold_min_left(1) == timedelta(seconds=30)


@pytest.mark.gen_test
async def test_with_a_five_minute_hold_a_retry_answers_the_same_order():
    async with shop(config={**kit.CONFIG, "site": {**kit.CONFIG["site"], "hold_minutes": 5}}) as s:
        p, c, r1, key = await first_checkout(s)
        r2 = await c.checkout(kit.REDIRECT, kit.FLAT)  # a lost response, retried at once
        assert r2.status == 200 and r2.body == r1.body
        assert ("check", key) not in kit.CALLS  # not near expiry: nothing to ask
        assert await s.storage.orders.count({}) == 1
        assert (await s.storage.products.get(p["_id"]))["stock"] == 3  # held once
        await near_expiry(s, key, timedelta(minutes=3))  # more than half the hold left
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
