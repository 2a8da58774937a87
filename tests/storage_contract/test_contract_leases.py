"""Leases on every backend: an Idempotency-Key claim's, and the checkout lock released only by its holder."""

from __future__ import annotations

import asyncio

import pytest


@pytest.mark.gen_test(timeout=60)
async def test_an_idempotency_claim_is_taken_over_only_after_its_lease(backend):
    keys = (await backend.storage()).idempotency
    assert await keys.claim("1:live", "h", lease_seconds=60) is None
    live = await keys.claim("1:live", "h", lease_seconds=60)
    assert live["state"] == "running"  # its lease runs: still someone's request
    # A claim whose lease is over (its process was killed): the same request takes it over.
    assert await keys.claim("1:dead", "h", lease_seconds=-1) is None
    other = await keys.claim("1:dead", "another body", lease_seconds=60)
    assert other["state"] == "running" and other["request_hash"] == "h"  # never for another body
    assert await keys.claim("1:dead", "h", lease_seconds=60) is None
    again = await keys.claim("1:dead", "h", lease_seconds=60)
    assert again["state"] == "running" and again["lease_until"] > 0  # the new lease holds
    # finish, forget and purge work on a taken-over claim as on any other.
    await keys.finish("1:dead", 200, {"order_key": "ORD-2026-000001"})
    done = await keys.claim("1:dead", "h", lease_seconds=-1)
    assert done["state"] == "done" and done["body"] == {"order_key": "ORD-2026-000001"}
    # Racing takeovers of one dead claim: exactly one wins.
    assert await keys.claim("2:race", "h", lease_seconds=-1) is None
    results = await asyncio.gather(*(keys.claim("2:race", "h", lease_seconds=60) for _ in range(10)))
    assert results.count(None) == 1
    assert all(r["state"] == "running" for r in results if r is not None)


@pytest.mark.gen_test(timeout=60)
async def test_the_checkout_lock_is_released_only_by_its_holder(backend):
    customers = (await backend.storage()).customers
    ada = await customers.create("h", {"first_name": "Ada"})
    mine = await customers.acquire_checkout_lock(ada["_id"], -1)  # taken, and lapsed at once
    theirs = await customers.acquire_checkout_lock(ada["_id"], 60)  # another checkout takes it
    assert theirs is not None and theirs["checkout_lock"] != mine["checkout_lock"]
    # The first checkout finishes late: its release leaves the other's lock alone.
    assert not await customers.release_checkout_lock(ada["_id"], {"fingerprint": "f", "order_key": "k1"},
                                                     as_read=mine, held=mine["checkout_lock"])
    doc = await customers.get(ada["_id"])
    assert doc["checkout_lock"] == theirs["checkout_lock"] and "last_checkout" not in doc
    assert await customers.acquire_checkout_lock(ada["_id"], 60) is None
    # The holder's own release works.
    assert await customers.release_checkout_lock(ada["_id"], {"fingerprint": "f", "order_key": "k2"},
                                                 as_read=theirs, held=theirs["checkout_lock"])
    doc = await customers.get(ada["_id"])
    assert doc["checkout_lock"] == 0.0 and doc["last_checkout"]["order_key"] == "k2"


@pytest.mark.gen_test(timeout=60)
async def test_clearing_a_paid_cart_releases_only_our_own_lock(backend):
    customers = (await backend.storage()).customers
    ada = await customers.create("h", {})
    await customers.add_to_cart(ada["_id"], 1, 2)
    mine = await customers.acquire_checkout_lock(ada["_id"], -1)
    theirs = await customers.acquire_checkout_lock(ada["_id"], 60)
    # Our lock lapsed and was taken: the ordered items still leave the cart, the lock stays theirs.
    assert await customers.remove_ordered_items(ada["_id"], {1: 2}, "ORD-2026-000001", release_lock=True,
                                                as_read=mine, held=mine["checkout_lock"])
    doc = await customers.get(ada["_id"])
    assert doc["cart"] == {} and doc["checkout_lock"] == theirs["checkout_lock"]
    assert "ORD-2026-000001" in doc["cleared"]
    # The same for the slower path (an ordered line changed meanwhile), and for an order done already.
    await customers.add_to_cart(ada["_id"], 1, 3)
    assert await customers.remove_ordered_items(ada["_id"], {1: 2}, "ORD-2026-000002", release_lock=True,
                                                as_read=mine, held=mine["checkout_lock"])
    assert not await customers.remove_ordered_items(ada["_id"], {1: 2}, "ORD-2026-000002", release_lock=True,
                                                    as_read=mine, held=mine["checkout_lock"])
    doc = await customers.get(ada["_id"])
    assert doc["cart"] == {"1": 1} and doc["checkout_lock"] == theirs["checkout_lock"]
    # With our own lock: cleared and released in the one update.
    await customers.release_checkout_lock(ada["_id"])
    held = await customers.acquire_checkout_lock(ada["_id"], 60)
    assert await customers.remove_ordered_items(ada["_id"], {1: 1}, "ORD-2026-000003", release_lock=True,
                                                as_read=held, held=held["checkout_lock"])
    doc = await customers.get(ada["_id"])
    assert doc["cart"] == {} and doc["checkout_lock"] == 0.0


@pytest.mark.gen_test(timeout=60)
async def test_a_claim_names_its_order_and_a_takeover_tells_it(backend):
    keys = (await backend.storage()).idempotency
    fresh = await keys.try_claim("1:k", "h", lease_seconds=-1)
    assert fresh.ours and fresh.record is None  # a new claim: nothing was there
    await keys.attach_order("1:k", "ORD-2026-000007")
    # Its lease is over (the process died): the retry takes it over and learns its order.
    taken = await keys.try_claim("1:k", "h", lease_seconds=60)
    assert taken.ours and taken.record["order_key"] == "ORD-2026-000007"
    assert taken.record["state"] == "running"
    # A live claim is not ours, and names its order too; `claim` says the same as before.
    live = await keys.try_claim("1:k", "h", lease_seconds=60)
    assert not live.ours and live.record["order_key"] == "ORD-2026-000007"
    assert (await keys.claim("1:k", "h"))["order_key"] == "ORD-2026-000007"
    # A new order made under the taken-over claim replaces the name; a done key keeps its answer.
    await keys.attach_order("1:k", "ORD-2026-000008")
    await keys.finish("1:k", 200, {"order_key": "ORD-2026-000008"})
    await keys.attach_order("1:k", "ORD-2026-000009")  # not running any more: nothing changes
    done = await keys.try_claim("1:k", "h", lease_seconds=-1)
    assert not done.ours and done.record["state"] == "done"
    assert done.record["order_key"] == "ORD-2026-000008" and done.record["body"] == {"order_key": "ORD-2026-000008"}
    # Another body never takes a claim over, whatever it names.
    await keys.try_claim("2:k", "h", lease_seconds=-1)
    await keys.attach_order("2:k", "ORD-2026-000010")
    other = await keys.try_claim("2:k", "another body", lease_seconds=60)
    assert not other.ours and other.record["request_hash"] == "h"
