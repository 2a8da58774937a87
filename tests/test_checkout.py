"""POST /api/shop/checkout/cart: the seed page's rules, answers and status codes."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import checkout_fixtures as kit
import pytest
from invariants import assert_stock_invariant
from pymongo.errors import AutoReconnect

from checkout_server import clock
from checkout_server.stock import commits, reservations

ORDER_KEY = re.compile(r"^ORD-\d{4}-\d{6}$")


@pytest.fixture(autouse=True)
def fresh_gateway():
    kit.GATEWAY_STATE.clear()
    kit.CALLS.clear()


shop = kit.shop


async def cart_of(customer) -> dict:
    return (await customer.shop.storage.customers.get(customer.id))["cart"]


# -- success

@pytest.mark.gen_test
async def test_direct_payment_answers_order_key_and_empties_cart():
    async with shop() as s:
        widget = await s.product("Widget", price=1200, stock=5)
        gadget = await s.product("Gadget", price=300, stock=5)
        c = await s.customer(cart={widget["_id"]: 2, gadget["_id"]: 1})
        r = await c.checkout(kit.DIRECT, kit.FLAT, notes="Please deliver after 5 PM")
        assert r.status == 200, r
        assert set(r.body) == {"order_key"} and ORDER_KEY.match(r.body["order_key"])
        assert await cart_of(c) == {}
        order = await s.storage.orders.get(r.body["order_key"])
        assert order["status"] == "PROCESSING" and order["stock"] == "held"
        await commits.flush(s.storage)  # the batch finishing paid orders, now rather than in a moment
        order = await s.storage.orders.get(r.body["order_key"])
        assert order["status"] == "PROCESSING" and order["stock"] == "committed"
        assert (await s.storage.products.get(widget["_id"]))["holds"] == {}
        assert [h["status"] for h in order["history"]] == ["HOLD", "PROCESSING"]
        assert (await s.storage.products.get(widget["_id"]))["stock"] == 3
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_redirect_payment_answers_next_step_and_keeps_cart_until_paid():
    async with shop() as s:
        widget = await s.product(price=1000, stock=5)
        c = await s.customer(cart={widget["_id"]: 2})
        r = await c.checkout(kit.REDIRECT, kit.FLAT)
        assert r.status == 200, r
        assert set(r.body) == {"next_step"}
        key = r.body["next_step"].rsplit("/", 1)[1]
        order = await s.storage.orders.get(key)
        assert order["status"] == "HOLD" and order["stock"] == "held"
        assert order["payment"]["reference"] == f"ref-{key}"
        assert order["payment"]["next_step"] == r.body["next_step"]
        # The return URL carries the order's return token; the order keeps only its hash.
        rt = await kit.return_token(s.storage, key)
        assert len(rt) >= 22 and rt not in order["return_token"]
        assert order["payment"]["data"]["return_url"] == (
            f"http://api.shop.test/api/shop/checkout/return/{kit.REDIRECT}?order={key}&rt={rt}")
        assert await cart_of(c) == {str(widget["_id"]): 2}
        assert (await s.storage.products.get(widget["_id"]))["stock"] == 3
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_order_snapshot_prices_totals_address_and_notes(monkeypatch):
    monkeypatch.setattr(clock, "utcnow", lambda: datetime(2026, 3, 1, 12, tzinfo=UTC))
    async with shop() as s:
        widget = await s.product("Widget", price=1250, stock=5)
        c = await s.customer(cart={widget["_id"]: 3})
        r = await c.checkout(kit.DIRECT, kit.GB_ONLY, notes="  ring twice ")
        key = r.body["order_key"]
        assert key.startswith("ORD-2026-")
        # A later price change does not touch the order.
        await s.storage.products.update(widget["_id"], {"price": 9999})
        r = await c.request("GET", f"/api/shop/orders/{key}")
        assert r.status == 200
        o = r.body
        assert o["items"] == [{"product": widget["_id"], "name": "Widget", "quantity": 3,
                               "unit_price": 1250, "line_total": 3750}]
        assert (o["subtotal"], o["shipping_cost"], o["total"], o["currency"]) == (3750, 300, 4050, "EUR")
        assert o["payment_method"] == kit.DIRECT and o["shipping_method"] == kit.GB_ONLY
        assert o["address"]["city"] == "London" and o["address"]["name"] == "Ada Lovelace"
        assert o["billing"]["email"] == "ada@example.com"
        assert o["notes"] == "ring twice" and o["status"] == "PROCESSING"
        assert o["created_at"].startswith("2026-03-01T12:00:00")


@pytest.mark.gen_test
async def test_order_keys_are_sequential_per_year():
    async with shop() as s:
        p = await s.product(stock=10)
        keys = []
        for _ in range(3):
            c = await s.customer(cart={p["_id"]: 1})
            keys.append((await c.checkout(kit.DIRECT, kit.FLAT)).body["order_key"])
        seqs = [int(k.rsplit("-", 1)[1]) for k in keys]
        assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2]


# -- the six validation rules: 400, a message saying what is wrong, no order

async def assert_refused(s, c, status, *fragments, payment=kit.DIRECT, shipping=kit.FLAT, **extra):
    before = await s.storage.orders.count({})
    cart_before = await cart_of(c)
    r = await c.checkout(payment, shipping, **extra)
    assert r.status == status, r
    assert set(r.body) <= {"error", "fields"}
    for fragment in fragments:
        assert fragment in r.body["error"], (fragment, r.body)
    assert await s.storage.orders.count({}) == before  # invariant 2: no order
    assert await cart_of(c) == cart_before
    return r


@pytest.mark.gen_test
async def test_empty_cart_is_refused():
    async with shop() as s:
        c = await s.customer()
        r = await assert_refused(s, c, 400, "your cart is empty")
        assert r.body["fields"] == {"cart": ["your cart is empty"]}


@pytest.mark.gen_test
async def test_short_stock_names_the_product_and_how_many_are_left():
    async with shop() as s:
        widget = await s.product("Widget", stock=2)
        gone = await s.product("Gizmo", stock=0)
        c = await s.customer(cart={widget["_id"]: 3, gone["_id"]: 1})
        r = await assert_refused(s, c, 400, f"not enough stock for Widget (product {widget['_id']}): 2 left, 3 in your cart",
                                 f"Gizmo (product {gone['_id']}) is out of stock")
        assert len(r.body["fields"]["cart"]) == 2
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_incomplete_profile_lists_missing_fields():
    async with shop() as s:
        p = await s.product()
        c = await s.customer(complete=False, first_name="Ada", email="ada@example.com", cart={p["_id"]: 1})
        r = await assert_refused(s, c, 400, "profile is incomplete", "last_name", "phone")
        assert "first_name" not in r.body["error"]


@pytest.mark.gen_test
async def test_address_of_another_customer_is_refused_like_a_missing_one():
    async with shop() as s:
        p = await s.product()
        c = await s.customer(cart={p["_id"]: 1})
        other = await s.customer()
        r1 = await assert_refused(s, c, 400, f"address {other.address_id} is not one of your addresses",
                                  address=other.address_id)
        r2 = await assert_refused(s, c, 400, "address 987654 is not one of your addresses", address=987654)
        assert r1.body["fields"].keys() == r2.body["fields"].keys() == {"address"}


@pytest.mark.gen_test
async def test_payment_method_inactive_unknown_or_not_supporting_the_cart():
    async with shop() as s:
        p = await s.product()
        ebook = await s.product("E-book", digital=True, weight=0)
        c = await s.customer(cart={p["_id"]: 1})
        await assert_refused(s, c, 400, f"payment method {kit.INACTIVE_PAYMENT} is not available",
                             payment=kit.INACTIVE_PAYMENT)
        await assert_refused(s, c, 400, "payment method 77 is not available", payment=77)
        d = await s.customer(cart={ebook["_id"]: 1})
        r = await assert_refused(s, d, 400, "Pay on delivery", "not available for digital goods")
        assert set(r.body["fields"]) == {"payment_method"}


@pytest.mark.gen_test
async def test_shipping_method_inactive_or_not_supporting_cart_and_address():
    async with shop() as s:
        p = await s.product()
        c = await s.customer(cart={p["_id"]: 1})
        await assert_refused(s, c, 400, f"shipping method {kit.INACTIVE_SHIPPING} is not available",
                             shipping=kit.INACTIVE_SHIPPING)
        berlin = await s.storage.customers.add_address(c.id, {"line1": "Unter den Linden 1", "line2": "",
                                                              "city": "Berlin", "postal_code": "10117",
                                                              "country": "DE"})
        await assert_refused(s, c, 400, "GB only", "ships to GB only", shipping=kit.GB_ONLY, address=berlin["id"])


@pytest.mark.gen_test
async def test_every_failing_rule_is_reported_at_once():
    async with shop() as s:
        p = await s.product(stock=0)
        c = await s.customer(complete=False, cart={p["_id"]: 1})
        r = await assert_refused(s, c, 400, payment=77, shipping=88, address=999)
        assert set(r.body["fields"]) == {"cart", "profile", "address", "payment_method", "shipping_method"}


@pytest.mark.gen_test
async def test_an_empty_cart_reports_the_other_failing_rules_too():
    async with shop() as s:
        c = await s.customer(complete=False)
        r = await assert_refused(s, c, 400, "your cart is empty", "profile is incomplete",
                                 "address 999 is not one of your addresses", "payment method 77 is not available",
                                 "shipping method 88 is not available", payment=77, shipping=88, address=999)
        assert list(r.body["fields"]) == ["cart", "profile", "address", "payment_method", "shipping_method"]
        assert r.body["fields"]["cart"] == ["your cart is empty"]
        # Methods that exist are not asked about an empty cart: only the cart is refused.
        r = await assert_refused(s, await s.customer(), 400, "your cart is empty")
        assert r.body["fields"] == {"cart": ["your cart is empty"]}


@pytest.mark.gen_test
async def test_request_body_is_validated():
    async with shop() as s:
        p = await s.product()
        c = await s.customer(cart={p["_id"]: 1})
        for body in ({"payment_method": 1, "shipping_method": 1},
                     {"address": "1", "payment_method": 1, "shipping_method": 1},
                     {"address": {"$gt": 0}, "payment_method": 1, "shipping_method": 1},
                     {"address": c.address_id, "payment_method": 1, "shipping_method": 1, "notes": "x" * 501},
                     {"address": c.address_id, "payment_method": 1, "shipping_method": 1, "status": "PROCESSING"}):
            r = await c.request("POST", "/api/shop/checkout/cart", body)
            assert r.status == 400 and "error" in r.body and r.body["fields"], (body, r)
        assert await s.storage.orders.count({}) == 0


# -- status codes

@pytest.mark.gen_test
async def test_401_without_or_with_a_bad_token():
    async with shop() as s:
        body = {"address": 1, "payment_method": 1, "shipping_method": 1}
        r = await s.request("POST", "/api/shop/checkout/cart", body)
        assert r.status == 401 and "error" in r.body
        r = await s.request("POST", "/api/shop/checkout/cart", body, token="nope")
        assert r.status == 401 and "error" in r.body


@pytest.mark.gen_test
async def test_gateway_error_is_503_order_cancelled_units_back_cart_untouched():
    async with shop() as s:
        p = await s.product(stock=4)
        c = await s.customer(cart={p["_id"]: 3})
        r = await c.checkout(kit.DOWN, kit.FLAT)
        assert r.status == 503, r
        assert set(r.body) == {"error"} and "payment service is unavailable" in r.body["error"]
        assert await cart_of(c) == {str(p["_id"]): 3}
        assert (await s.storage.products.get(p["_id"]))["stock"] == 4
        [order] = await s.storage.orders.find({})
        assert order["status"] == "CANCELLED" and order["stock"] == "released"
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_provider_crash_is_500_json_without_traceback_and_cleans_up():
    async with shop() as s:
        p = await s.product(stock=4)
        c = await s.customer(cart={p["_id"]: 3})
        r = await c.checkout(kit.BROKEN, kit.FLAT)
        assert r.status == 500, r
        assert set(r.body) == {"error"}
        assert "Traceback" not in r.raw.decode() and "passwd" not in r.raw.decode()
        assert await cart_of(c) == {str(p["_id"]): 3}
        assert (await s.storage.products.get(p["_id"]))["stock"] == 4
        [order] = await s.storage.orders.find({})
        assert order["status"] == "CANCELLED"
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_customer_can_checkout_again_after_a_503():
    async with shop() as s:
        p = await s.product(stock=4)
        c = await s.customer(cart={p["_id"]: 3})
        assert (await c.checkout(kit.DOWN, kit.FLAT)).status == 503
        r = await c.checkout(kit.DIRECT, kit.FLAT)
        assert r.status == 200 and "order_key" in r.body
        await assert_stock_invariant(s.storage)


# -- double submit

@pytest.mark.gen_test
async def test_two_identical_checkouts_at_once_create_one_order():
    async with shop() as s:
        p = await s.product(stock=10)
        c = await s.customer(cart={p["_id"]: 2})
        r1, r2 = await asyncio.gather(c.checkout(kit.REDIRECT, kit.FLAT), c.checkout(kit.REDIRECT, kit.FLAT))
        assert sorted([r1.status, r2.status]) in ([200, 200], [200, 409]), (r1, r2)
        assert await s.storage.orders.count({}) == 1
        # And a repeat after the fact (a lost response) answers the same next step.
        r3 = await c.checkout(kit.REDIRECT, kit.FLAT)
        assert r3.status == 200 and r3.body == (r1.body if r1.status == 200 else r2.body)
        assert await s.storage.orders.count({}) == 1
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_concurrent_checkout_gets_409_while_the_first_runs():
    async with shop() as s:
        p = await s.product(stock=10)
        c = await s.customer(cart={p["_id"]: 1})
        assert await s.storage.customers.acquire_checkout_lock(c.id, 60)
        r = await c.checkout(kit.DIRECT, kit.FLAT)
        assert r.status == 409 and "in progress" in r.body["error"]
        await s.storage.customers.release_checkout_lock(c.id)
        assert (await c.checkout(kit.DIRECT, kit.FLAT)).status == 200


@pytest.mark.gen_test
async def test_answers_keep_their_order_while_another_checkout_runs():
    # The checkout authenticates and locks in one update; 401, then 400, then 409 still hold.
    async with shop() as s:
        p = await s.product(stock=10)
        c = await s.customer(cart={p["_id"]: 1})
        assert await s.storage.customers.acquire_checkout_lock(c.id, 60)
        body = {"address": c.address_id, "payment_method": kit.DIRECT, "shipping_method": kit.FLAT}
        r = await s.request("POST", "/api/shop/checkout/cart", body, token="not-a-token")
        assert r.status == 401
        r = await c.request("POST", "/api/shop/checkout/cart", {**body, "address": "x"})
        assert r.status == 400 and set(r.body["fields"]) == {"address"}
        r = await c.checkout(kit.DIRECT, kit.FLAT)
        assert r.status == 409
        await s.storage.customers.release_checkout_lock(c.id)
        assert (await c.checkout(kit.DIRECT, kit.FLAT)).status == 200


@pytest.mark.gen_test
async def test_refused_checkouts_leave_the_customer_unlocked():
    async with shop() as s:
        p = await s.product(stock=10)
        c = await s.customer(cart={p["_id"]: 1})
        r = await c.request("POST", "/api/shop/checkout/cart", {"payment_method": kit.DIRECT})
        assert r.status == 400
        assert (await c.checkout(kit.DIRECT, kit.FLAT, address=987654)).status == 400
        assert (await c.checkout(kit.DOWN, kit.FLAT)).status == 503
        assert (await c.checkout(kit.REDIRECT, kit.FLAT)).status == 200
        # Each answer released the lock: nothing is held now.
        assert await s.storage.customers.acquire_checkout_lock(c.id, 60) is not None


@pytest.mark.gen_test
async def test_changed_cart_makes_a_new_order():
    async with shop() as s:
        p = await s.product(stock=10)
        c = await s.customer(cart={p["_id"]: 1})
        r1 = await c.checkout(kit.REDIRECT, kit.FLAT)
        await s.storage.customers.add_to_cart(c.id, p["_id"], 1)
        r2 = await c.checkout(kit.REDIRECT, kit.FLAT)
        assert r1.body != r2.body and await s.storage.orders.count({}) == 2
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_unchanged_cart_with_another_body_answers_the_hold_order():
    # CONTRACT.md: the repeat is told by the cart alone, so other notes make no second hold.
    async with shop() as s:
        p = await s.product(stock=4)
        c = await s.customer(cart={p["_id"]: 2})
        r1 = await c.checkout(kit.REDIRECT, kit.FLAT, notes="after 5 PM")
        r2 = await c.checkout(kit.REDIRECT, kit.FLAT, notes="after 6 PM")
        assert r1.status == r2.status == 200 and r2.body == r1.body
        assert await s.storage.orders.count({}) == 1
        assert (await s.storage.products.get(p["_id"]))["stock"] == 2  # held once
        await assert_stock_invariant(s.storage)


async def _move_hold_until(s, key: str, left: timedelta) -> None:
    order = await s.storage.orders.get(key)
    await s.storage.orders.transition(key, {"status": "HOLD"}, {"hold_until": datetime.now(UTC) + left},
                                      current=order)


class Flaky:
    """Replaces an async storage method: its first `times` calls fail like a dropped connection,
    before (`applied=False`) or after (`applied=True`) the real call."""

    def __init__(self, real, times: int = 1, applied: bool = False, when=lambda *a, **k: True):
        self.real, self.times, self.applied, self.when = real, times, applied, when
        self.failed = 0

    async def __call__(self, *args, **kwargs):
        if self.failed < self.times and self.when(*args, **kwargs):
            self.failed += 1
            if self.applied:
                await self.real(*args, **kwargs)
            raise AutoReconnect("connection dropped")
        return await self.real(*args, **kwargs)


@pytest.mark.gen_test
async def test_a_paid_checkout_whose_cart_clearing_fails_answers_its_order_once(monkeypatch):
    async with shop() as s:
        p = await s.product(stock=5)
        c = await s.customer(cart={p["_id"]: 2})
        flaky = Flaky(s.storage.customers.remove_ordered_items)
        monkeypatch.setattr(s.storage.customers, "remove_ordered_items", flaky)
        r1 = await c.checkout(kit.DIRECT, kit.FLAT)
        assert flaky.failed == 1
        # The order is paid: its key is the answer, not a 503 inviting a second order.
        [order] = await s.storage.orders.find({})
        assert r1.status == 200 and r1.body == {"order_key": order["_id"]}
        assert order["status"] == "PROCESSING" and await cart_of(c) == {str(p["_id"]): 2}
        # A retry (the answer lost too) of the unchanged cart: the same order, now finished.
        r2 = await c.checkout(kit.DIRECT, kit.FLAT)
        assert r2.status == 200 and r2.body == r1.body
        assert await s.storage.orders.count({}) == 1
        await commits.flush(s.storage)
        assert (await s.storage.orders.get(order["_id"]))["stock"] == "committed"
        assert await cart_of(c) == {}
        assert (await s.storage.products.get(p["_id"]))["stock"] == 3
        await assert_stock_invariant(s.storage)
        # Nothing left locked, and a finished order is not answered again.
        assert (await c.checkout(kit.DIRECT, kit.FLAT)).status == 400  # the cart is empty


@pytest.mark.gen_test
async def test_a_paid_checkout_left_unfinished_is_finished_by_the_reconciler(monkeypatch):
    async with shop() as s:
        p = await s.product(stock=5)
        c = await s.customer(cart={p["_id"]: 2})
        monkeypatch.setattr(s.storage.customers, "remove_ordered_items",
                            Flaky(s.storage.customers.remove_ordered_items))
        key = (await c.checkout(kit.DIRECT, kit.FLAT)).body["order_key"]
        report = await reservations.reconcile(s.storage)
        assert report.committed == [key] and await cart_of(c) == {}
        await assert_stock_invariant(s.storage)


@pytest.mark.parametrize("method,answer", [(kit.DIRECT, "order_key"), (kit.REDIRECT, "next_step")])
@pytest.mark.gen_test
async def test_a_lost_reply_to_recording_the_payment_still_answers_the_order(monkeypatch, method, answer):
    async with shop() as s:
        p = await s.product(stock=5)
        c = await s.customer(cart={p["_id"]: 2})
        # The server applied the write; its reply never came back.
        flaky = Flaky(s.storage.orders.transition, applied=True,
                      when=lambda key, expect, *a, **k: expect == {"stock": "reserving"})
        monkeypatch.setattr(s.storage.orders, "transition", flaky)
        r = await c.checkout(method, kit.FLAT)
        assert flaky.failed == 1
        await commits.flush(s.storage)
        [order] = await s.storage.orders.find({})
        assert r.status == 200 and set(r.body) == {answer}
        assert order["status"] == ("PROCESSING" if method == kit.DIRECT else "HOLD")
        if method == kit.DIRECT:
            assert r.body == {"order_key": order["_id"]} and order["stock"] == "committed"
        else:
            assert r.body == {"next_step": order["payment"]["next_step"]}
        await assert_stock_invariant(s.storage)


@pytest.mark.parametrize("method,answer", [(kit.DIRECT, "order_key"), (kit.REDIRECT, "next_step")])
@pytest.mark.gen_test
async def test_a_failing_lock_release_never_replaces_the_answer(monkeypatch, method, answer):
    async with shop() as s:
        p = await s.product(stock=5)
        c = await s.customer(cart={p["_id"]: 2})
        release = Flaky(s.storage.customers.release_checkout_lock, times=2)
        monkeypatch.setattr(s.storage.customers, "release_checkout_lock", release)
        r = await c.checkout(method, kit.FLAT)
        assert r.status == 200 and set(r.body) == {answer}
        await release.real(c.id)  # the lock left behind lapses (LOCK_SECONDS)
        assert (await c.checkout(kit.DIRECT, kit.FLAT, address=987654)).status == 400  # not a 500
        # (A direct checkout releases its lock in the update that clears the cart.)
        assert release.failed == (1 if method == kit.DIRECT else 2)
        assert await s.storage.orders.count({}) == 1
        await assert_stock_invariant(s.storage)
