"""Idempotency-Key on POST /api/shop/checkout/cart (CONTRACT.md, invariant 4)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import checkout_fixtures as kit
import pytest
from invariants import assert_stock_invariant
from pymongo.errors import AutoReconnect

from checkout_server.checkout import flow as checkout_module
from checkout_server.checkout import idempotency as keyed_checkout
from checkout_server.checkout import lock as checkout_lock
from checkout_server.payments.sweeper import sweep

shop = kit.shop


@pytest.mark.gen_test
async def test_same_key_and_body_replays_the_first_answer_exactly():
    async with shop() as s:
        p = await s.product(stock=10)
        c = await s.customer(cart={p["_id"]: 1})
        first = await c.checkout(kit.DIRECT, kit.FLAT, idempotency_key="k-1")
        assert first.status == 200
        # The cart is empty now: without the key this would be a 400.
        again = await c.checkout(kit.DIRECT, kit.FLAT, idempotency_key="k-1")
        assert (again.status, again.raw) == (first.status, first.raw)
        assert await s.storage.orders.count({}) == 1
        assert (await c.checkout(kit.DIRECT, kit.FLAT)).status == 400  # empty cart
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_same_key_with_a_different_body_is_400():
    async with shop() as s:
        p = await s.product(stock=10)
        c = await s.customer(cart={p["_id"]: 1})
        await c.checkout(kit.REDIRECT, kit.FLAT, idempotency_key="k-2")
        r = await c.checkout(kit.REDIRECT, kit.FLAT, idempotency_key="k-2", notes="changed my mind")
        assert r.status == 400 and "different request body" in r.body["error"]
        assert await s.storage.orders.count({}) == 1


@pytest.mark.gen_test
async def test_refusals_are_replayed_too():
    async with shop() as s:
        p = await s.product(stock=0)
        c = await s.customer(cart={p["_id"]: 1})
        first = await c.checkout(kit.DIRECT, kit.FLAT, idempotency_key="k-3")
        assert first.status == 400
        await s.storage.products.adjust_stock(p["_id"], 5)
        again = await c.checkout(kit.DIRECT, kit.FLAT, idempotency_key="k-3")
        assert (again.status, again.raw) == (400, first.raw)


@pytest.mark.gen_test
async def test_a_503_is_not_stored_so_the_same_key_can_retry():
    async with shop() as s:
        p = await s.product(stock=10)
        c = await s.customer(cart={p["_id"]: 1})
        r = await c.checkout(kit.DOWN, kit.FLAT, idempotency_key="k-4")
        assert r.status == 503
        r = await c.checkout(kit.DOWN, kit.FLAT, idempotency_key="k-4")
        assert r.status == 503  # a real retry, not a replay
        assert await s.storage.orders.count({"status": "CANCELLED"}) == 2
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_same_key_while_the_first_is_running_is_409():
    async with shop() as s:
        p = await s.product(stock=10)
        c = await s.customer(cart={p["_id"]: 1})
        # The body as c.checkout sends it (no notes).
        request = {"address": c.address_id, "payment_method": kit.DIRECT, "shipping_method": kit.FLAT}
        # A first request with this key and body has claimed it and not finished yet.
        assert await s.storage.idempotency.claim(f"{c.id}:k-5", keyed_checkout.request_hash(request)) is None
        r = await c.checkout(kit.DIRECT, kit.FLAT, idempotency_key="k-5")
        assert r.status == 409 and "still being processed" in r.body["error"]
        assert await s.storage.orders.count({}) == 0


@pytest.mark.gen_test
async def test_concurrent_requests_with_one_key_make_one_order():
    async with shop() as s:
        p = await s.product(stock=10)
        c = await s.customer(cart={p["_id"]: 1})
        answers = await asyncio.gather(*[c.checkout(kit.REDIRECT, kit.FLAT, idempotency_key="k-6") for _ in range(4)])
        statuses = [a.status for a in answers]
        assert 200 in statuses and set(statuses) <= {200, 409}
        assert len({a.raw for a in answers if a.status == 200}) == 1
        assert await s.storage.orders.count({}) == 1
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_keys_are_per_customer_and_at_most_255_characters():
    async with shop() as s:
        p = await s.product(stock=10)
        a = await s.customer(cart={p["_id"]: 1})
        b = await s.customer(cart={p["_id"]: 1})
        ra = await a.checkout(kit.DIRECT, kit.FLAT, idempotency_key="shared")
        rb = await b.checkout(kit.DIRECT, kit.FLAT, idempotency_key="shared")
        assert ra.status == rb.status == 200 and ra.body != rb.body
        r = await a.checkout(kit.DIRECT, kit.FLAT, idempotency_key="x" * 256)
        assert r.status == 400 and "Idempotency-Key" in r.body["error"]


@pytest.mark.gen_test
async def test_keys_older_than_a_day_are_purged_by_the_sweeper():
    async with shop() as s:
        p = await s.product(stock=10)
        c = await s.customer(cart={p["_id"]: 1})
        await c.checkout(kit.DIRECT, kit.FLAT, idempotency_key="old")
        await s.storage.idempotency.collection.update_one(
            {"_id": f"{c.id}:old"}, {"$set": {"created_at": datetime.now(UTC) - timedelta(hours=25)}})
        report = await sweep(s.storage, s.methods)
        assert report.purged_keys == 1


class Killed(BaseException):
    """What a SIGKILL leaves: nothing after this point runs, `forget` included."""


async def checkout_killed_before_its_answer_is_stored(s, c, monkeypatch, payment_method: int, key: str):
    """A keyed checkout whose process dies after it ran, before the key's answer was stored."""

    async def killed(*args, **kwargs):
        raise Killed()

    monkeypatch.setattr(s.storage.idempotency, "finish", killed)
    with pytest.raises(Killed):
        sent = {"address": c.address_id, "payment_method": payment_method, "shipping_method": kit.FLAT}
        await checkout_module.checkout_cart(
            s.storage, s.methods, await s.storage.customers.get(c.id), {**sent, "notes": ""}, key,
            sent=sent, reverse_url=s.app.reverse_url)
    monkeypatch.undo()


def after_the_lease(monkeypatch) -> None:
    """Move the clock past a claim's lease (checkout_lock.LOCK_SECONDS)."""
    kit.move_clock(monkeypatch, checkout_lock.LOCK_SECONDS + 1)


@pytest.mark.gen_test
async def test_a_key_left_running_by_a_killed_process_works_again_after_its_lease(monkeypatch):
    async with shop() as s:
        p = await s.product(stock=10)
        c = await s.customer(cart={p["_id"]: 1})

        # The process dies after the checkout answered, before the key's answer was stored.
        await checkout_killed_before_its_answer_is_stored(s, c, monkeypatch, kit.REDIRECT, "k-8")
        [order] = await s.storage.orders.find({})
        # Within the lease the claim looks like a request still running, but it names its
        # order, whose payment is recorded: that fixes the answer, so the retry gets it.
        r = await c.checkout(kit.REDIRECT, kit.FLAT, idempotency_key="k-8")
        assert r.status == 200 and r.body == {"next_step": order["payment"]["next_step"]}
        # The lease (checkout_lock.LOCK_SECONDS) is over: the same answer (stored by now).
        after_the_lease(monkeypatch)
        r = await c.checkout(kit.REDIRECT, kit.FLAT, idempotency_key="k-8")
        assert r.status == 200 and r.body == {"next_step": order["payment"]["next_step"]}
        monkeypatch.undo()
        again = await c.checkout(kit.REDIRECT, kit.FLAT, idempotency_key="k-8")
        assert (again.status, again.raw) == (r.status, r.raw)  # stored now: replayed
        assert await s.storage.orders.count({}) == 1
        await assert_stock_invariant(s.storage)


class DroppedOnce:
    """Replaces an async storage method: its first call fails like a dropped connection."""

    def __init__(self, real):
        self.real = real
        self.failed = 0

    async def __call__(self, *args, **kwargs):
        if not self.failed:
            self.failed += 1
            raise AutoReconnect("connection dropped")
        return await self.real(*args, **kwargs)


@pytest.mark.gen_test
async def test_an_answer_that_could_not_be_stored_is_answered_from_its_order(monkeypatch):
    async with shop() as s:
        p = await s.product(stock=10)
        c = await s.customer(cart={p["_id"]: 2})
        finish = DroppedOnce(s.storage.idempotency.finish)
        monkeypatch.setattr(s.storage.idempotency, "finish", finish)
        first = await c.checkout(kit.DIRECT, kit.FLAT, idempotency_key="k-9")
        assert finish.failed == 1
        [order] = await s.storage.orders.find({})
        assert first.status == 200 and first.body == {"order_key": order["_id"]}  # not a 500
        # The claim is still "running", but names the paid order: a retry gets its answer
        # (the cart is empty now: a new checkout would say so, for 24 hours).
        again = await c.checkout(kit.DIRECT, kit.FLAT, idempotency_key="k-9")
        assert (again.status, again.raw) == (first.status, first.raw)
        stored = await s.storage.idempotency.collection.find_one({"_id": f"{c.id}:k-9"})
        assert stored["state"] == "done" and stored["body"] == first.body
        assert await s.storage.orders.count({}) == 1
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_a_taken_over_key_answers_the_order_of_the_request_that_died(monkeypatch):
    async with shop() as s:
        p = await s.product(stock=10)
        c = await s.customer(cart={p["_id"]: 2})
        # Killed after a direct checkout (the cart emptied), before its answer was stored.
        await checkout_killed_before_its_answer_is_stored(s, c, monkeypatch, kit.DIRECT, "k-10")
        [order] = await s.storage.orders.find({})
        # After the lease the retry takes the claim over: its order is the answer, for good.
        after_the_lease(monkeypatch)
        r = await c.checkout(kit.DIRECT, kit.FLAT, idempotency_key="k-10")
        assert r.status == 200 and r.body == {"order_key": order["_id"]}
        monkeypatch.undo()
        again = await c.checkout(kit.DIRECT, kit.FLAT, idempotency_key="k-10")
        assert (again.status, again.raw) == (r.status, r.raw)
        assert await s.storage.orders.count({}) == 1
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_a_claim_naming_a_cancelled_order_runs_again(monkeypatch):
    async with shop() as s:
        p = await s.product(stock=10)
        c = await s.customer(cart={p["_id"]: 1})
        # A 503 whose claim could not be dropped: it names an order cancelled at once.
        monkeypatch.setattr(s.storage.idempotency, "forget", DroppedOnce(s.storage.idempotency.forget))
        assert (await c.checkout(kit.DOWN, kit.FLAT, idempotency_key="k-11")).status == 503
        claim = await s.storage.idempotency.collection.find_one({"_id": f"{c.id}:k-11"})
        assert claim["state"] == "running" and claim["order_key"]
        # Within its lease: still running. After it: a real retry, not that order's key.
        assert (await c.checkout(kit.DOWN, kit.FLAT, idempotency_key="k-11")).status == 409
        after_the_lease(monkeypatch)
        assert (await c.checkout(kit.DOWN, kit.FLAT, idempotency_key="k-11")).status == 503
        assert await s.storage.orders.count({"status": "CANCELLED"}) == 2
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_same_key_with_a_body_that_differs_only_in_spacing_is_400():
    # Compared as the client sent it: notes "  first  " is not "first", though both are
    # stored as "first" once cleaned.
    async with shop() as s:
        p = await s.product(stock=10)
        c = await s.customer(cart={p["_id"]: 1})
        first = await c.checkout(kit.REDIRECT, kit.FLAT, idempotency_key="k-spaces", notes="first")
        assert first.status == 200
        again = await c.checkout(kit.REDIRECT, kit.FLAT, idempotency_key="k-spaces", notes="  first  ")
        assert again.status == 400 and "different request body" in again.body["error"]
        # Key order and spacing between JSON tokens are not what was sent: still a replay.
        raw = (f'{{ "shipping_method": {kit.FLAT}, "notes": "first", '
               f'"payment_method": {kit.REDIRECT}, "address": {c.address_id} }}').encode()
        replay = await c.request("POST", "/api/shop/checkout/cart", raw_body=raw,
                                 headers={"Idempotency-Key": "k-spaces"})
        assert (replay.status, replay.raw) == (200, first.raw)
        assert await s.storage.orders.count({}) == 1
