"""Storage operations the checkout and settlement use, on every backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from checkout_server.payments.settlement import settle
from checkout_server.plugin.providers import PaymentCheck, PaymentState
from checkout_server.stock import reservations
from checkout_server.storage.models import Order


def _order(key: str, customer: int, lines: dict[int, int], status="HOLD", stock="reserving", age=timedelta(0)):
    now = datetime.now(UTC) - age
    return {"_id": key, "customer": customer, "status": status, "stock": stock, "total": 1000,
            "currency": "EUR",
            "items": [{"product": p, "name": f"P{p}", "quantity": q, "unit_price": 1, "line_total": q}
                      for p, q in lines.items()],
            "created_at": now, "updated_at": now, "hold_until": now + timedelta(minutes=30),
            "history": [{"status": "HOLD", "at": now, "reason": "order created"}], "payment": {}}


@pytest.mark.gen_test(timeout=60)
async def test_checkout_lock_returns_the_customer_and_keeps_last_checkout(backend):
    storage = await backend.storage()
    doc = await storage.customers.create("hash", {"first_name": "Ada"})
    await storage.customers.add_to_cart(doc["_id"], 7, 2)
    locked = await storage.customers.acquire_checkout_lock(doc["_id"], 60)
    assert locked["_id"] == doc["_id"] and locked["cart"] == {"7": 2} and locked["first_name"] == "Ada"
    assert await storage.customers.acquire_checkout_lock(doc["_id"], 60) is None
    await storage.customers.release_checkout_lock(doc["_id"], {"fingerprint": "f" * 64, "order_key": "ORD-2026-000001"})
    again = await storage.customers.acquire_checkout_lock(doc["_id"], 60)
    assert again["last_checkout"] == {"fingerprint": "f" * 64, "order_key": "ORD-2026-000001"}


@pytest.mark.gen_test(timeout=60)
async def test_order_events_are_a_set_of_strings(backend):
    storage = await backend.storage()
    await storage.orders.insert(_order("ORD-2026-000001", 1, {1: 1}))
    for event in ("evt_1", "evt_2", "evt_1"):
        await storage.orders.add_event("ORD-2026-000001", event)
    assert (await storage.orders.get("ORD-2026-000001"))["events"] == ["evt_1", "evt_2"]


@pytest.mark.gen_test(timeout=60)
async def test_reconciler_undoes_an_interrupted_checkout_and_finishes_settlements(backend):
    storage = await backend.storage()
    a = await storage.products.create({"name": "A", "price": 1, "stock": 10})
    b = await storage.products.create({"name": "B", "price": 1, "stock": 10})
    # Crashed after reserving, before recording the payment.
    await storage.orders.insert(_order("ORD-2026-000001", 1, {a["_id"]: 2, b["_id"]: 3}, age=timedelta(hours=1)))
    assert await storage.products.reserve("ORD-2026-000001", {a["_id"]: 2, b["_id"]: 3}) == 2
    # Crashed after a settlement's status transition, before its stock side effect.
    await storage.orders.insert(_order("ORD-2026-000002", 1, {a["_id"]: 1}, status="CANCELLED", stock="held"))
    await storage.products.reserve("ORD-2026-000002", {a["_id"]: 1})
    await storage.orders.insert(_order("ORD-2026-000003", 1, {b["_id"]: 4}, status="PROCESSING", stock="held"))
    await storage.products.reserve("ORD-2026-000003", {b["_id"]: 4})
    # A live checkout, seconds old: left alone.
    await storage.orders.insert(_order("ORD-2026-000004", 1, {a["_id"]: 1}))
    await storage.products.reserve("ORD-2026-000004", {a["_id"]: 1})
    # A marker whose order is gone (a reserve that landed after its checkout was given up).
    await storage.products.reserve("ORD-2026-000099", {b["_id"]: 1})

    report = await reservations.reconcile(storage)
    assert report.interrupted == ["ORD-2026-000001"]
    assert report.released == ["ORD-2026-000002"] and report.committed == ["ORD-2026-000003"]
    assert report.orphans == 1
    assert await storage.orders.get("ORD-2026-000001") is None
    assert (await storage.orders.get("ORD-2026-000002"))["stock"] == "released"
    assert (await storage.orders.get("ORD-2026-000003"))["stock"] == "committed"
    pa, pb = await storage.products.get(a["_id"]), await storage.products.get(b["_id"])
    assert (pa["stock"], pb["stock"]) == (9, 6)
    assert pa["holds"] == {"ORD-2026-000004": 1} and pb["holds"] == {}
    assert not await reservations.reconcile(storage)  # nothing left to do


@pytest.mark.gen_test(timeout=60)
async def test_settle_races_have_one_winner(backend):
    storage = await backend.storage()
    other = await backend.another_client()
    p = await storage.products.create({"name": "A", "price": 1, "stock": 10})
    customer = await storage.customers.create("hash", {})
    await storage.customers.add_to_cart(customer["_id"], p["_id"], 2)
    await storage.orders.insert(_order("ORD-2026-000001", customer["_id"], {p["_id"]: 2}, stock="held"))
    await storage.products.reserve("ORD-2026-000001", {p["_id"]: 2})
    order = await storage.orders.get("ORD-2026-000001")
    paid = PaymentCheck(PaymentState.PAID, amount=1000, currency="EUR")
    failed = PaymentCheck(PaymentState.FAILED)
    outcomes = await asyncio.gather(*[settle(s, None, order, c) for s in (storage, other) for c in (paid, failed)
                                      for _ in range(3)])
    assert sum(o.changed for o in outcomes) == 1
    final = await storage.orders.get("ORD-2026-000001")
    product = await storage.products.get(p["_id"])
    if final["status"] == "PROCESSING":
        assert (product["stock"], final["stock"]) == (8, "committed")
        assert (await storage.customers.get(customer["_id"]))["cart"] == {}
    else:
        assert (product["stock"], final["stock"]) == (10, "released")
    assert product["holds"] == {}


# -- the cheaper checkout: auth + lock in one update, writes from the caller's copy, exactly-once cart


@pytest.mark.gen_test(timeout=60)
async def test_checkout_lock_by_token_authenticates_and_locks_in_one_update(backend):
    storage = await backend.storage()
    ada = await storage.customers.create("hash-ada", {"first_name": "Ada"})
    await storage.customers.create("hash-bob", {"first_name": "Bob"})
    await storage.customers.add_to_cart(ada["_id"], 7, 2)
    locked = await storage.customers.acquire_checkout_lock_by_token("hash-ada", 60)
    assert locked["_id"] == ada["_id"] and locked["cart"] == {"7": 2} and locked["first_name"] == "Ada"
    # Busy and unknown both give None; the token read tells them apart.
    assert await storage.customers.acquire_checkout_lock_by_token("hash-ada", 60) is None
    assert await storage.customers.acquire_checkout_lock(ada["_id"], 60) is None
    assert await storage.customers.acquire_checkout_lock_by_token("hash-nobody", 60) is None
    assert (await storage.customers.by_token_hash("hash-ada"))["_id"] == ada["_id"]
    # Another customer's lock is their own.
    assert (await storage.customers.acquire_checkout_lock_by_token("hash-bob", 60))["first_name"] == "Bob"
    await storage.customers.release_checkout_lock(ada["_id"])
    assert await storage.customers.acquire_checkout_lock_by_token("hash-ada", -1) is not None  # expires at once
    wins = await asyncio.gather(*(storage.customers.acquire_checkout_lock_by_token("hash-ada", 60)
                                  for _ in range(10)))
    assert sum(w is not None for w in wins) == 1


@pytest.mark.gen_test(timeout=60)
async def test_remove_ordered_items_of_an_order_happens_once(backend):
    storage = await backend.storage()
    ada = await storage.customers.create("h", {})
    for product, quantity in ((1, 2), (2, 1), (3, 5)):
        await storage.customers.add_to_cart(ada["_id"], product, quantity)
    # Unchanged lines (the one-update path): they go; the line not ordered stays.
    assert await storage.customers.remove_ordered_items(ada["_id"], {1: 2, 2: 1}, "ORD-2026-000001") is True
    assert (await storage.customers.get(ada["_id"]))["cart"] == {"3": 5}
    # The shopper puts the same items back: a repeat for the same order changes nothing.
    await storage.customers.add_to_cart(ada["_id"], 1, 2)
    await storage.customers.add_to_cart(ada["_id"], 2, 1)
    assert await storage.customers.remove_ordered_items(ada["_id"], {1: 2, 2: 1}, "ORD-2026-000001") is False
    assert (await storage.customers.get(ada["_id"]))["cart"] == {"3": 5, "1": 2, "2": 1}
    # Lines changed since the checkout (the $inc path): raised keeps the rest, lowered goes.
    await storage.customers.add_to_cart(ada["_id"], 3, 1)  # 6 now, 5 ordered
    assert await storage.customers.remove_ordered_items(ada["_id"], {3: 5, 1: 4}, "ORD-2026-000002") is True
    assert (await storage.customers.get(ada["_id"]))["cart"] == {"2": 1, "3": 1}
    assert await storage.customers.remove_ordered_items(ada["_id"], {3: 5, 1: 4}, "ORD-2026-000002") is False
    assert (await storage.customers.get(ada["_id"]))["cart"] == {"2": 1, "3": 1}
    cleared = (await storage.customers.get(ada["_id"]))["cleared"]
    assert set(cleared) == {"ORD-2026-000001", "ORD-2026-000002"}


@pytest.mark.gen_test(timeout=60)
async def test_remove_ordered_items_races_have_one_winner(backend):
    storage = await backend.storage()
    other = await backend.another_client()
    ada = await storage.customers.create("h", {})
    await storage.customers.add_to_cart(ada["_id"], 1, 3)
    await storage.customers.add_to_cart(ada["_id"], 2, 1)
    won = await asyncio.gather(*(s.customers.remove_ordered_items(ada["_id"], {1: 1}, "ORD-2026-000001")
                                 for s in (storage, other) for _ in range(4)))
    assert sum(won) == 1
    assert (await storage.customers.get(ada["_id"]))["cart"] == {"1": 2, "2": 1}


@pytest.mark.gen_test(timeout=60)
async def test_remove_ordered_items_releases_the_lock_and_prunes_old_records(backend):
    from checkout_server.storage.customers import CLEARED_KEEP_SECONDS

    storage = await backend.storage()
    ada = await storage.customers.create("h", {})
    await storage.customers.add_to_cart(ada["_id"], 1, 1)
    assert await storage.customers.remove_ordered_items(ada["_id"], {1: 1}, "ORD-2025-000001")
    # Make that record old, then check out again: the lock's read sees it and the
    # removal's update prunes it.
    await storage.customers.collection.update_one(
        {"_id": ada["_id"]}, {"$set": {"cleared.ORD-2025-000001": 1000.0}})
    await storage.customers.add_to_cart(ada["_id"], 1, 1)
    as_read = await storage.customers.acquire_checkout_lock(ada["_id"], 60)
    assert await storage.customers.remove_ordered_items(ada["_id"], {1: 1}, "ORD-2026-000001",
                                                        release_lock=True, as_read=as_read)
    doc = await storage.customers.get(ada["_id"])
    assert doc["cart"] == {} and doc["checkout_lock"] == 0.0
    assert set(doc["cleared"]) == {"ORD-2026-000001"}
    assert doc["cleared"]["ORD-2026-000001"] > 1000.0 + CLEARED_KEEP_SECONDS
    # Already done for this order: the lock is still released.
    as_read = await storage.customers.acquire_checkout_lock(ada["_id"], 60)
    assert not await storage.customers.remove_ordered_items(ada["_id"], {1: 1}, "ORD-2026-000001",
                                                            release_lock=True, as_read=as_read)
    assert await storage.customers.acquire_checkout_lock(ada["_id"], 60) is not None
    # release_checkout_lock prunes old records of the customer as read, too.
    await storage.customers.collection.update_one(
        {"_id": ada["_id"]}, {"$set": {"cleared.ORD-2026-000001": 1000.0}})
    as_read = await storage.customers.get(ada["_id"])
    await storage.customers.release_checkout_lock(ada["_id"], {"fingerprint": "f", "order_key": "k"}, as_read=as_read)
    doc = await storage.customers.get(ada["_id"])
    assert doc["cleared"] == {} and doc["checkout_lock"] == 0.0 and doc["last_checkout"]["order_key"] == "k"


def _naive(value):
    """A document (or an order's) with its datetimes made naive (mongomock reads them back
    without a zone)."""
    if isinstance(value, Order):
        return _naive(value.to_document())
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, dict):
        return {k: _naive(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_naive(v) for v in value]
    return value


@pytest.mark.gen_test(timeout=60)
async def test_order_transition_from_the_callers_copy(backend):
    storage = await backend.storage()
    stored = await storage.orders.insert(_order("ORD-2026-000001", 1, {1: 1}))
    # insert and transition return the order exactly as stored (datetimes to the millisecond).
    assert _naive(stored) == _naive(await storage.orders.get("ORD-2026-000001"))
    held = await storage.orders.transition("ORD-2026-000001", {"stock": "reserving"},
                                           {"stock": "held", "payment.reference": "r-1"}, current=stored)
    assert _naive(held) == _naive(await storage.orders.get("ORD-2026-000001")) and held["rev"] == 1
    # A stale copy (the order moved on since): read again, and applied on top of the change.
    moved = await storage.orders.transition("ORD-2026-000001", {"stock": "held"}, {"note": "n"}, current=stored)
    assert moved["note"] == "n" and moved["payment"]["reference"] == "r-1" and moved["rev"] == 2
    # A copy that no longer matches the guard: nothing happens.
    assert await storage.orders.transition("ORD-2026-000001", {"stock": "reserving"}, {"stock": "held"},
                                           current=stored) is None
    assert await storage.orders.transition("ORD-2026-000001", {"status": "CANCELLED"}, {"stock": "x"},
                                           current=moved) is None
    assert (await storage.orders.get("ORD-2026-000001"))["rev"] == 2


@pytest.mark.gen_test(timeout=60)
async def test_an_event_is_never_lost_to_a_concurrent_transition(backend):
    storage = await backend.storage()
    order = await storage.orders.insert(_order("ORD-2026-000001", 1, {1: 1}, stock="held"))
    # A settlement holding the order as it was, while a notification records its event.
    await storage.orders.add_event("ORD-2026-000001", "evt_1")
    moved = await storage.orders.transition("ORD-2026-000001", {"status": "HOLD"}, {"status": "PROCESSING"},
                                            history={"status": "PROCESSING"}, current=order)
    assert moved["events"] == ["evt_1"]
    await storage.orders.add_event("ORD-2026-000001", "evt_2")
    final = await storage.orders.get("ORD-2026-000001")
    assert final["events"] == ["evt_1", "evt_2"] and final["status"] == "PROCESSING"
    # Racing both ways on two clients: every event and the transition land.
    other = await backend.another_client()
    await storage.orders.insert(_order("ORD-2026-000002", 1, {1: 1}, stock="held"))
    current = await storage.orders.get("ORD-2026-000002")
    await asyncio.gather(
        *(s.orders.add_event("ORD-2026-000002", f"evt_{n}") for n, s in enumerate([storage, other] * 3)),
        storage.orders.transition("ORD-2026-000002", {"status": "HOLD"}, {"status": "CANCELLED"}, current=current),
        other.orders.transition("ORD-2026-000002", {"stock": "held"}, {"note": "x"}, current=current))
    final = await storage.orders.get("ORD-2026-000002")
    assert sorted(final["events"]) == [f"evt_{n}" for n in range(6)]
    assert final["status"] == "CANCELLED" and final["note"] == "x"


@pytest.mark.gen_test(timeout=60)
async def test_stock_and_hold_and_all_holds(backend):
    storage = await backend.storage()
    a = await storage.products.create({"name": "A", "price": 1, "stock": 5})
    b = await storage.products.create({"name": "B", "price": 1, "stock": 1})
    c = await storage.products.create({"name": "C", "price": 1, "stock": 3})
    assert await storage.products.reserve("ORD-2026-000001", {a["_id"]: 2, b["_id"]: 2}) == 1
    await storage.products.reserve("ORD-2026-000002", {a["_id"]: 1})
    state = await storage.products.stock_and_hold("ORD-2026-000001", [a["_id"], b["_id"], c["_id"], 9999])
    assert state == {a["_id"]: (2, 2), b["_id"]: (1, None), c["_id"]: (3, None)}
    assert await storage.products.stock_and_hold("ORD-2026-000001", []) == {}
    assert await storage.products.all_holds() == {a["_id"]: {"ORD-2026-000001": 2, "ORD-2026-000002": 1}}


@pytest.mark.gen_test(timeout=60)
async def test_reconciler_takes_a_paid_orders_items_out_of_the_cart_once(backend):
    storage = await backend.storage()
    p = await storage.products.create({"name": "A", "price": 1, "stock": 10})
    ada = await storage.customers.create("h", {})
    await storage.customers.add_to_cart(ada["_id"], p["_id"], 3)
    # Paid, then the process died before any side effect.
    await storage.orders.insert(_order("ORD-2026-000001", ada["_id"], {p["_id"]: 2}, status="PROCESSING",
                                       stock="held"))
    await storage.products.reserve("ORD-2026-000001", {p["_id"]: 2})
    # Paid, cart already cleared, died before `committed`; the shopper added the item again.
    await storage.customers.add_to_cart(ada["_id"], 99, 1)
    await storage.orders.insert(_order("ORD-2026-000002", ada["_id"], {99: 1}, status="PROCESSING", stock="held"))
    assert await storage.customers.remove_ordered_items(ada["_id"], {99: 1}, "ORD-2026-000002")
    await storage.customers.add_to_cart(ada["_id"], 99, 1)

    report = await reservations.reconcile(storage, orphan_scan=False)
    assert report.committed == ["ORD-2026-000001", "ORD-2026-000002"]
    assert (await storage.customers.get(ada["_id"]))["cart"] == {str(p["_id"]): 1, "99": 1}
    assert [(await storage.orders.get(k))["stock"] for k in ("ORD-2026-000001", "ORD-2026-000002")] == \
        ["committed", "committed"]
    product = await storage.products.get(p["_id"])
    assert (product["stock"], product["holds"]) == (8, {})
    assert not await reservations.reconcile(storage)


# -- the cart clean-up after a paid order: one guarded write, never a line below zero


class Crash(Exception):
    """The process dies here: nothing after this write runs."""


class CrashAfterWrite:
    """A collection whose process is killed right after its `n`th write has been applied."""

    WRITES = ("update_one", "update_many", "find_one_and_update", "bulk_write", "insert_one", "replace_one")

    def __init__(self, collection, n: int):
        self._collection = collection
        self._n = n
        self.writes = 0

    def __getattr__(self, name):
        attr = getattr(self._collection, name)
        if name not in self.WRITES:
            return attr

        async def write(*args, **kwargs):
            result = await attr(*args, **kwargs)
            self.writes += 1
            if self.writes == self._n:
                raise Crash(f"killed after write {self._n} ({name})")
            return result
        return write


@pytest.mark.parametrize("crash_after", [1, 2, 3])
@pytest.mark.gen_test(timeout=60)
async def test_clearing_a_changed_cart_is_all_or_nothing_at_every_crash(backend, crash_after):
    from checkout_server.storage.customers import Customers

    storage = await backend.storage()
    ada = await storage.customers.create("h", {})
    # Ordered 3 of product 1 and 1 of product 2; while paying, the shopper lowered line 1
    # to 1 and raised line 2 to 3; product 3 was never ordered.
    for product, quantity in ((1, 1), (2, 3), (3, 2)):
        await storage.customers.add_to_cart(ada["_id"], product, quantity)
    before = {"1": 1, "2": 3, "3": 2}
    after = {"2": 2, "3": 2}
    crashing = Customers(CrashAfterWrite(storage.customers.collection, crash_after), storage.counters)
    try:
        await crashing.remove_ordered_items(ada["_id"], {1: 3, 2: 1}, "ORD-2026-000001")
    except Crash:
        pass
    doc = await storage.customers.get(ada["_id"])
    assert all(quantity > 0 for quantity in doc["cart"].values()), doc["cart"]
    if "ORD-2026-000001" in (doc.get("cleared") or {}):
        assert doc["cart"] == after  # done, with its mark, in one write
    else:
        assert doc["cart"] == before  # not started
    # The reconciler repeats it: the same end state, exactly once.
    await storage.customers.remove_ordered_items(ada["_id"], {1: 3, 2: 1}, "ORD-2026-000001")
    assert not await storage.customers.remove_ordered_items(ada["_id"], {1: 3, 2: 1}, "ORD-2026-000001")
    doc = await storage.customers.get(ada["_id"])
    assert doc["cart"] == after and "ORD-2026-000001" in doc["cleared"]


class ShopperChangesCartOnFirstRead:
    """A collection where the shopper raises a cart line right after the clean-up's first read."""

    def __init__(self, collection, customer_id: int, path: str):
        self._collection = collection
        self._customer_id = customer_id
        self._path = path
        self.reads = 0

    def __getattr__(self, name):
        return getattr(self._collection, name)

    async def find_one(self, *args, **kwargs):
        doc = await self._collection.find_one(*args, **kwargs)
        self.reads += 1
        if self.reads == 1:
            await self._collection.update_one({"_id": self._customer_id}, {"$inc": {self._path: 1}})
        return doc


@pytest.mark.gen_test(timeout=60)
async def test_clearing_a_changed_cart_keeps_a_change_made_between_its_read_and_write(backend):
    from checkout_server.storage.customers import Customers

    storage = await backend.storage()
    ada = await storage.customers.create("h", {})
    await storage.customers.add_to_cart(ada["_id"], 1, 3)  # ordered 2: the slow path
    racing = ShopperChangesCartOnFirstRead(storage.customers.collection, ada["_id"], "cart.1")
    customers = Customers(racing, storage.counters)
    assert await customers.remove_ordered_items(ada["_id"], {1: 2}, "ORD-2026-000001")
    assert racing.reads == 2  # its guarded write missed the change: read again, written once
    assert (await storage.customers.get(ada["_id"]))["cart"] == {"1": 2}  # 3 + 1 - 2


@pytest.mark.gen_test(timeout=60)
async def test_a_negative_cart_line_counts_as_zero(backend):
    # What an older version's crash could leave behind: a line below zero.
    storage = await backend.storage()
    ada = await storage.customers.create("h", {})
    await storage.customers.collection.update_one({"_id": ada["_id"]}, {"$set": {"cart.1": -2, "cart.2": -1}})
    assert (await storage.customers.add_to_cart(ada["_id"], 1, 1))["cart"]["1"] == 1
    assert (await storage.customers.add_to_cart(ada["_id"], 2, 5, max_quantity=999))["cart"]["2"] == 5
    assert await storage.customers.add_to_cart(ada["_id"], 2, 995, max_quantity=999) is None  # 5 + 995
    await storage.customers.collection.update_one({"_id": ada["_id"]}, {"$set": {"cart.3": -4}})
    assert await storage.customers.add_to_cart(ada["_id"], 3, 1000, max_quantity=999) is None
    assert (await storage.customers.set_cart_quantity(ada["_id"], 3, 2))["cart"]["3"] == 2
    await storage.customers.collection.update_one({"_id": ada["_id"]}, {"$set": {"cart.4": -1}})
    # A clean-up meeting one takes it out with the rest.
    assert await storage.customers.remove_ordered_items(ada["_id"], {4: 1, 1: 1}, "ORD-2026-000001")
    assert (await storage.customers.get(ada["_id"]))["cart"] == {"2": 5, "3": 2}


@pytest.mark.gen_test(timeout=60)
async def test_adding_to_a_cart_changes_only_that_customers_cart(backend):
    storage = await backend.storage()
    ada = await storage.customers.create("h1", {})
    bob = await storage.customers.create("h2", {})
    await storage.customers.add_to_cart(ada["_id"], 5, 3, max_quantity=999)
    assert (await storage.customers.add_to_cart(bob["_id"], 5, 1, max_quantity=999))["cart"] == {"5": 1}
    assert (await storage.customers.add_to_cart(bob["_id"], 5, 2))["cart"] == {"5": 3}
    assert (await storage.customers.get(ada["_id"]))["cart"] == {"5": 3}
    assert (await storage.customers.get(bob["_id"]))["cart"] == {"5": 3}


@pytest.mark.gen_test(timeout=60)
async def test_markers_of_many_orders_dropped_in_one_call(backend):
    storage = await backend.storage()
    mug = await storage.products.create({"name": "Mug", "price": 100, "stock": 20})
    pen = await storage.products.create({"name": "Pen", "price": 100, "stock": 20})
    cup = await storage.products.create({"name": "Cup", "price": 100, "stock": 20})
    for key, lines in {"ORD-1": {mug["_id"]: 1, pen["_id"]: 2}, "ORD-2": {mug["_id"]: 3},
                       "ORD-3": {mug["_id"]: 1, cup["_id"]: 1}}.items():
        assert await storage.products.reserve(key, lines) == len(lines)
    # ORD-3 stays on hold; ORD-9 never reserved anything (a marker already gone is fine).
    changed = await storage.products.commit_many({"ORD-1": [mug["_id"], pen["_id"]], "ORD-2": [mug["_id"]],
                                                  "ORD-9": [cup["_id"]]})
    assert changed == 2  # mug and pen; cup had nothing of theirs
    holds = {p["_id"]: (await storage.products.get(p["_id"]))["holds"] for p in (mug, pen, cup)}
    assert holds == {mug["_id"]: {"ORD-3": 1}, pen["_id"]: {}, cup["_id"]: {"ORD-3": 1}}
    stock = [(await storage.products.get(p["_id"]))["stock"] for p in (mug, pen, cup)]
    assert stock == [15, 18, 19]  # sold units stay sold
    assert await storage.products.commit_many({}) == 0
