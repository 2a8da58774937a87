"""Every Storage operation the service uses, on every backend (see conftest.py)."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.errors import DuplicateKeyError


def _now():
    return datetime.now(UTC)


# -- counters

@pytest.mark.gen_test(timeout=30)
async def test_counters_start_at_one_and_are_unique_under_concurrency(backend):
    storage = await backend.storage()
    assert await storage.counters.next_value("things") == 1
    assert await storage.counters.next_value("things") == 2
    assert await storage.counters.next_value("other") == 1
    values = await asyncio.gather(*(storage.counters.next_value("things") for _ in range(30)))
    assert sorted(values) == list(range(3, 33))


@pytest.mark.gen_test(timeout=30)
async def test_counter_blocks_are_disjoint_under_concurrency(backend):
    storage = await backend.storage()
    assert list(await storage.counters.next_block("things", 5)) == [1, 2, 3, 4, 5]
    assert await storage.counters.next_value("things") == 6
    blocks = await asyncio.gather(*(storage.counters.next_block("things", 10) for _ in range(20)))
    values = [v for block in blocks for v in block]
    assert sorted(values) == list(range(7, 207))  # every value once, no block overlaps another


# -- customers

@pytest.mark.gen_test
async def test_customer_create_and_token_lookup(backend):
    storage = await backend.storage()
    ada = await storage.customers.create("hash-ada", {"first_name": "Ada", "email": "ada@example.com"})
    bob = await storage.customers.create("hash-bob", {})
    assert ada["_id"] != bob["_id"]
    found = await storage.customers.by_token_hash("hash-ada")
    assert found["_id"] == ada["_id"] and found["first_name"] == "Ada" and found["last_name"] is None
    assert found["addresses"] == {} and found["cart"] == {}
    assert await storage.customers.by_token_hash("hash-nobody") is None
    assert (await storage.customers.get(bob["_id"]))["token_hash"] == "hash-bob"
    assert await storage.customers.get(999999) is None


@pytest.mark.gen_test
async def test_customer_token_hash_is_unique_and_can_be_replaced(backend):
    storage = await backend.storage()
    ada = await storage.customers.create("hash-1", {"email": "ada@example.com"})
    with pytest.raises(DuplicateKeyError):
        await storage.customers.create("hash-1", {})
    assert await storage.customers.set_token_hash(ada["_id"], "hash-2") is True
    assert await storage.customers.by_token_hash("hash-1") is None
    assert (await storage.customers.by_token_hash("hash-2"))["_id"] == ada["_id"]
    assert await storage.customers.set_token_hash(424242, "hash-3") is False


@pytest.mark.gen_test
async def test_customer_find_by_email(backend):
    storage = await backend.storage()
    ada = await storage.customers.create("h1", {"email": "ada@example.com"})
    await storage.customers.create("h2", {"email": "bob@example.com"})
    assert (await storage.customers.find_by_email("ada@example.com"))["_id"] == ada["_id"]
    assert await storage.customers.find_by_email("nobody@example.com") is None


@pytest.mark.gen_test
async def test_customer_profile_update_only_touches_profile_fields(backend):
    storage = await backend.storage()
    ada = await storage.customers.create("h", {"first_name": "Ada"})
    updated = await storage.customers.update_profile(
        ada["_id"], {"last_name": "Lovelace", "phone": "+44 1", "token_hash": "evil", "cart": {}})
    assert updated["first_name"] == "Ada" and updated["last_name"] == "Lovelace"
    assert updated["phone"] == "+44 1" and updated["token_hash"] == "h"
    assert (await storage.customers.update_profile(ada["_id"], {}))["last_name"] == "Lovelace"
    assert await storage.customers.update_profile(9999, {"first_name": "X"}) is None


@pytest.mark.gen_test
async def test_address_map_add_and_delete(backend):
    storage = await backend.storage()
    ada = await storage.customers.create("h-ada", {})
    bob = await storage.customers.create("h-bob", {})
    home = await storage.customers.add_address(ada["_id"], {
        "line1": "1 Way", "line2": "", "city": "London", "postal_code": "N1", "country": "GB"})
    work = await storage.customers.add_address(ada["_id"], {
        "line1": "2 Road", "line2": "Floor 3", "city": "Paris", "postal_code": "75001", "country": "FR"})
    assert home["id"] != work["id"]
    doc = await storage.customers.get(ada["_id"])
    assert set(doc["addresses"]) == {str(home["id"]), str(work["id"])}
    assert doc["addresses"][str(work["id"])] == work
    # Another customer cannot delete it; a missing one is not deleted twice.
    assert await storage.customers.delete_address(bob["_id"], home["id"]) is False
    assert await storage.customers.delete_address(ada["_id"], home["id"]) is True
    assert await storage.customers.delete_address(ada["_id"], home["id"]) is False
    doc = await storage.customers.get(ada["_id"])
    assert list(doc["addresses"]) == [str(work["id"])]


@pytest.mark.gen_test
async def test_cart_inc_set_unset(backend):
    storage = await backend.storage()
    ada = await storage.customers.create("h", {})
    doc = await storage.customers.add_to_cart(ada["_id"], 7, 2)
    assert doc["cart"] == {"7": 2}
    doc = await storage.customers.add_to_cart(ada["_id"], 7, 3)
    doc = await storage.customers.add_to_cart(ada["_id"], 12, 1)
    assert doc["cart"] == {"7": 5, "12": 1}
    doc = await storage.customers.set_cart_quantity(ada["_id"], 12, 4)
    assert doc["cart"] == {"7": 5, "12": 4}
    doc = await storage.customers.set_cart_quantity(ada["_id"], 7, 0)
    assert doc["cart"] == {"12": 4}
    doc = await storage.customers.set_cart_quantity(ada["_id"], 99, 0)  # not there: no-op
    assert doc["cart"] == {"12": 4}
    assert await storage.customers.add_to_cart(4242, 1, 1) is None


@pytest.mark.gen_test
async def test_cart_add_respects_the_line_limit(backend):
    storage = await backend.storage()
    ada = await storage.customers.create("h", {})
    assert (await storage.customers.add_to_cart(ada["_id"], 3, 990, max_quantity=999))["cart"] == {"3": 990}
    # 990 + 10 would pass the limit: nothing changes.
    assert await storage.customers.add_to_cart(ada["_id"], 3, 10, max_quantity=999) is None
    assert (await storage.customers.get(ada["_id"]))["cart"] == {"3": 990}
    assert (await storage.customers.add_to_cart(ada["_id"], 3, 9, max_quantity=999))["cart"] == {"3": 999}
    # A new line starts from zero.
    assert (await storage.customers.add_to_cart(ada["_id"], 4, 999, max_quantity=999))["cart"]["4"] == 999


@pytest.mark.gen_test
async def test_remove_ordered_items_keeps_what_was_added_since(backend):
    storage = await backend.storage()
    ada = await storage.customers.create("h", {})
    for product, quantity in ((1, 2), (2, 3), (3, 1)):
        await storage.customers.add_to_cart(ada["_id"], product, quantity)
    # The order had 2 of product 1, 1 of product 2 (the shopper added 2 more since) and 1 of 3.
    await storage.customers.remove_ordered_items(ada["_id"], {1: 2, 2: 1, 3: 1})
    assert (await storage.customers.get(ada["_id"]))["cart"] == {"2": 2}
    await storage.customers.remove_ordered_items(ada["_id"], {})
    # Ordered more than is left (the shopper lowered the line meanwhile): the line goes.
    await storage.customers.remove_ordered_items(ada["_id"], {2: 5})
    assert (await storage.customers.get(ada["_id"]))["cart"] == {}


@pytest.mark.gen_test
async def test_checkout_lock_acquire_release(backend):
    storage = await backend.storage()
    ada = await storage.customers.create("h", {"first_name": "Ada"})
    await storage.customers.add_to_cart(ada["_id"], 5, 2)
    locked = await storage.customers.acquire_checkout_lock(ada["_id"], 60)
    # Taking the lock is the checkout's one read of the customer.
    assert locked["_id"] == ada["_id"] and locked["first_name"] == "Ada" and locked["cart"] == {"5": 2}
    assert await storage.customers.acquire_checkout_lock(ada["_id"], 60) is None
    await storage.customers.release_checkout_lock(ada["_id"], {"order_key": "ORD-1", "cart": {"5": 2}})
    assert (await storage.customers.get(ada["_id"]))["last_checkout"] == {"order_key": "ORD-1", "cart": {"5": 2}}
    assert await storage.customers.acquire_checkout_lock(ada["_id"], 60) is not None
    await storage.customers.release_checkout_lock(ada["_id"])
    # An expired lock (a crashed checkout) can be taken over.
    assert await storage.customers.acquire_checkout_lock(ada["_id"], -1) is not None
    assert await storage.customers.acquire_checkout_lock(ada["_id"], 60) is not None
    assert await storage.customers.acquire_checkout_lock(4242, 60) is None


@pytest.mark.gen_test(timeout=30)
async def test_checkout_lock_is_won_once_under_concurrency(backend):
    storage = await backend.storage()
    ada = await storage.customers.create("h", {})
    wins = await asyncio.gather(*(storage.customers.acquire_checkout_lock(ada["_id"], 60) for _ in range(10)))
    assert sum(1 for w in wins if w is not None) == 1


# -- products

async def _product(storage, name="Widget", price=1000, stock=10, **extra):
    return await storage.products.create({"name": name, "price": price, "stock": stock, **extra})


@pytest.mark.gen_test
async def test_product_create_get_many_find_by_name(backend):
    storage = await backend.storage()
    mug = await _product(storage, "Mug", 1200, 5, weight=350)
    ebook = await _product(storage, "E-book", 900, 1000, digital=True)
    assert mug["stock"] == mug["received"] == 5 and mug["active"] is True and mug["digital"] is False
    assert mug["weight"] == 350 and ebook["digital"] is True and ebook["weight"] == 0
    got = await storage.products.get(mug["_id"])
    assert got["name"] == "Mug" and got["price"] == 1200
    many = await storage.products.get_many([mug["_id"], ebook["_id"], 9999])
    assert set(many) == {mug["_id"], ebook["_id"]}
    assert many[ebook["_id"]]["stock"] == 1000 and "holds" not in many[ebook["_id"]]
    assert await storage.products.get_many([]) == {}
    assert (await storage.products.find_by_name("E-book"))["_id"] == ebook["_id"]
    assert await storage.products.find_by_name("Nope") is None
    assert [p["_id"] for p in await storage.products.all()] == [mug["_id"], ebook["_id"]]


@pytest.mark.gen_test
async def test_products_for_sale_pages_by_id_and_skips_inactive_ones(backend):
    storage = await backend.storage()
    ids = [(await _product(storage, f"P{n}", 100 + n, n))["_id"] for n in range(7)]
    for hidden in (ids[1], ids[2], ids[5]):
        await storage.products.update(hidden, {"active": False})
    first = await storage.products.for_sale(0, 2)
    assert [p["_id"] for p in first] == [ids[0], ids[3]]  # a page is filled past inactive ones
    assert first[1]["name"] == "P3" and first[1]["stock"] == 3 and "holds" not in first[1]
    assert first[0]["active"] is True and first[0]["digital"] is False
    assert [p["_id"] for p in await storage.products.for_sale(ids[3], 2)] == [ids[4], ids[6]]
    assert await storage.products.for_sale(ids[6], 2) == []
    assert [p["_id"] for p in await storage.products.for_sale(0, 100)] == [ids[0], ids[3], ids[4], ids[6]]


@pytest.mark.gen_test
async def test_product_update_only_touches_product_fields(backend):
    storage = await backend.storage()
    mug = await _product(storage, "Mug", 1200, 5)
    updated = await storage.products.update(
        mug["_id"], {"price": 1500, "active": False, "stock": 999, "received": 999, "holds": {}})
    assert updated["price"] == 1500 and updated["active"] is False
    assert updated["stock"] == 5 and updated["received"] == 5
    assert await storage.products.update(4242, {"price": 1}) is None


@pytest.mark.gen_test
async def test_adjust_stock_keeps_the_ledger(backend):
    storage = await backend.storage()
    mug = await _product(storage, "Mug", 1200, 5)
    restocked = await storage.products.adjust_stock(mug["_id"], 10)
    assert restocked["stock"] == 15 and restocked["received"] == 15
    written_off = await storage.products.adjust_stock(mug["_id"], -3)
    assert written_off["stock"] == 12 and written_off["received"] == 12
    # Never below zero.
    assert await storage.products.adjust_stock(mug["_id"], -13) is None
    assert (await storage.products.get(mug["_id"]))["stock"] == 12
    # With an expected current stock, a stale view changes nothing.
    assert await storage.products.adjust_stock(mug["_id"], 5, expect_stock=11) is None
    assert (await storage.products.adjust_stock(mug["_id"], 5, expect_stock=12))["stock"] == 17
    assert await storage.products.adjust_stock(4242, 1) is None


@pytest.mark.gen_test
async def test_reserve_release_commit_are_exactly_once(backend):
    storage = await backend.storage()
    mug = await _product(storage, "Mug", 1200, 5)
    pen = await _product(storage, "Pen", 200, 2)
    lines = {mug["_id"]: 3, pen["_id"]: 2}
    assert await storage.products.reserve("ORD-2026-000001", lines) == 2
    # The same order cannot take the units twice.
    assert await storage.products.reserve("ORD-2026-000001", lines) == 0
    assert await storage.products.held_by("ORD-2026-000001", lines) == lines
    products = await storage.products.get_many(lines)
    assert products[mug["_id"]]["stock"] == 2 and products[pen["_id"]]["stock"] == 0
    # A second order: the pen is sold out, the mug line holds.
    assert await storage.products.reserve("ORD-2026-000002", {mug["_id"]: 2, pen["_id"]: 1}) == 1
    assert await storage.products.held_by("ORD-2026-000002", [mug["_id"], pen["_id"]]) == {mug["_id"]: 2}
    # Release gives back only what the order holds, once.
    assert await storage.products.release("ORD-2026-000002", {mug["_id"]: 2, pen["_id"]: 1}) == 1
    assert await storage.products.release("ORD-2026-000002", {mug["_id"]: 2, pen["_id"]: 1}) == 0
    assert (await storage.products.get(mug["_id"]))["stock"] == 2
    assert (await storage.products.get(pen["_id"]))["stock"] == 0
    # Commit drops the markers once; the units stay sold; a later release gives nothing back.
    assert await storage.products.commit("ORD-2026-000001", lines) == 2
    assert await storage.products.commit("ORD-2026-000001", lines) == 0
    assert await storage.products.held_by("ORD-2026-000001", lines) == {}
    assert await storage.products.release("ORD-2026-000001", lines) == 0
    mug_doc = await storage.products.get(mug["_id"])
    assert mug_doc["stock"] == 2 and mug_doc["received"] == 5 and mug_doc["holds"] == {}
    assert await storage.products.reserve("ORD-X", {}) == 0
    assert await storage.products.release("ORD-X", {}) == 0
    assert await storage.products.commit("ORD-X", []) == 0
    assert await storage.products.held_by("ORD-X", []) == {}


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_reservations_never_oversell(backend):
    storage = await backend.storage()
    mug = await _product(storage, "Mug", 1200, 15)
    results = await asyncio.gather(*(
        storage.products.reserve(f"ORD-2026-{n:06d}", {mug["_id"]: 2}) for n in range(20)))
    assert sum(results) == 7
    doc = await storage.products.get(mug["_id"])
    assert doc["stock"] == 1 and sum(doc["holds"].values()) == 14
    assert doc["received"] == doc["stock"] + sum(doc["holds"].values())


@pytest.mark.gen_test(timeout=120)
async def test_twenty_clients_guarded_decrements_over_the_wire_oversell_nothing(backend):
    """20 separate clients race to take single units of a product with 60 in stock."""
    if not backend.wire:
        pytest.skip("mongomock has no wire and no separate clients")
    storage = await backend.storage()
    product = await _product(storage, "Hot item", 500, 60)
    clients = [await backend.another_client() for _ in range(20)]

    async def shopper(client, n):
        taken = 0
        for attempt in range(6):
            taken += await client.products.reserve(f"ORD-{n}-{attempt}", {product["_id"]: 1})
        return taken

    taken = await asyncio.gather(*(shopper(c, n) for n, c in enumerate(clients)))
    doc = await storage.products.get(product["_id"])
    assert sum(taken) == 60, taken
    assert doc["stock"] == 0 and len(doc["holds"]) == 60
    assert doc["received"] == doc["stock"] + sum(doc["holds"].values())


# -- orders

def _order(key, customer, created_at, stock="held", status="HOLD"):
    return {"_id": key, "customer": customer, "status": status, "stock": stock,
            "items": [{"product": 1, "name": "Mug", "quantity": 1, "unit_price": 100,
                       "line_total": 100}],
            "total": 100, "created_at": created_at, "updated_at": created_at, "history": []}


@pytest.mark.gen_test
async def test_order_keys_are_sequential_per_year(backend):
    storage = await backend.storage()
    assert await storage.orders.next_order_key(2026) == "ORD-2026-000001"
    assert await storage.orders.next_order_key(2026) == "ORD-2026-000002"
    assert await storage.orders.next_order_key(2027) == "ORD-2027-000001"


@pytest.mark.gen_test(timeout=60)
async def test_order_keys_from_two_clients_never_collide(backend):
    from checkout_server.storage.orders import ORDER_KEY_BLOCK

    first, second = await backend.storage(), await backend.another_client()
    await second.orders.prepare_order_keys(2026)  # the second process took its block first

    async def keys(storage, n):
        return [await storage.orders.next_order_key(2026) for _ in range(n)]

    n = ORDER_KEY_BLOCK * 2 + 7  # past the end of a block, with the next one taken ahead
    a, b = await asyncio.gather(keys(first, n), keys(second, n))
    assert len(set(a) | set(b)) == 2 * n
    assert a == sorted(a) and b == sorted(b)  # rising within each process
    assert b[0] == "ORD-2026-000001" and a[0] == f"ORD-2026-{ORDER_KEY_BLOCK + 1:06d}"
    await first.orders.close()
    await second.orders.close()


@pytest.mark.gen_test(timeout=60)
async def test_paid_orders_are_committed_many_at_once(backend):
    storage = await backend.storage()
    t = _now().replace(microsecond=0)
    await storage.orders.insert(_order("ORD-2026-000001", 1, t, status="PROCESSING"))
    await storage.orders.insert(_order("ORD-2026-000002", 1, t, status="PROCESSING"))
    await storage.orders.insert(_order("ORD-2026-000003", 1, t, status="CANCELLED"))  # an admin's cancel won
    await storage.orders.insert(_order("ORD-2026-000004", 1, t, status="PROCESSING"))  # not in the batch
    keys = ["ORD-2026-000001", "ORD-2026-000002", "ORD-2026-000003"]
    assert await storage.orders.mark_committed(keys) == 2
    got = {key: await storage.orders.get(key) for key in [*keys, "ORD-2026-000004"]}
    assert [got[k]["stock"] for k in got] == ["committed", "committed", "held", "held"]
    assert [got[k]["rev"] for k in got] == [1, 1, 0, 0]
    # The typed order reads back whole: its datetimes stay datetimes.
    assert got["ORD-2026-000001"].created_at.replace(tzinfo=UTC) == t
    assert await storage.orders.mark_committed(keys) == 0  # once
    assert await storage.orders.mark_committed([]) == 0


@pytest.mark.gen_test
async def test_orders_insert_get_and_ownership(backend):
    storage = await backend.storage()
    t = _now().replace(microsecond=0)
    await storage.orders.insert(_order("ORD-2026-000001", 1, t))
    await storage.orders.insert(_order("ORD-2026-000002", 1, t, stock="reserving"))
    with pytest.raises(DuplicateKeyError):
        await storage.orders.insert(_order("ORD-2026-000001", 2, t))
    got = await storage.orders.get("ORD-2026-000001")
    assert got["customer"] == 1 and got["items"][0]["name"] == "Mug"
    assert got["created_at"].replace(tzinfo=UTC) == t
    assert (await storage.orders.get_for_customer("ORD-2026-000001", 1))["_id"] == "ORD-2026-000001"
    assert await storage.orders.get_for_customer("ORD-2026-000001", 2) is None
    # An order still reserving is not the customer's to see yet.
    assert await storage.orders.get_for_customer("ORD-2026-000002", 1) is None
    assert await storage.orders.get("ORD-2026-999999") is None


@pytest.mark.gen_test
async def test_orders_list_newest_first_without_reserving(backend):
    storage = await backend.storage()
    t = _now()
    await storage.orders.insert(_order("ORD-2026-000001", 1, t - timedelta(minutes=3)))
    await storage.orders.insert(_order("ORD-2026-000002", 1, t - timedelta(minutes=1), status="PROCESSING",
                                       stock="committed"))
    await storage.orders.insert(_order("ORD-2026-000003", 1, t, stock="reserving"))
    await storage.orders.insert(_order("ORD-2026-000004", 2, t))
    await storage.orders.insert(_order("ORD-2026-000005", 1, t - timedelta(minutes=2), status="CANCELLED",
                                       stock="released"))
    keys = [o["_id"] for o in await storage.orders.list_for_customer(1)]
    assert keys == ["ORD-2026-000002", "ORD-2026-000005", "ORD-2026-000001"]
    assert [o["_id"] for o in await storage.orders.list_for_customer(1, limit=1, skip=1)] == ["ORD-2026-000005"]
    assert await storage.orders.list_for_customer(3) == []


@pytest.mark.gen_test
async def test_orders_list_pages_orders_of_one_millisecond_without_overlap(backend):
    storage = await backend.storage()
    t = _now()
    for n in (3, 1, 4, 2, 5):  # inserted out of key order, all in the same millisecond
        await storage.orders.insert(_order(f"ORD-2026-00000{n}", 1, t))
    await storage.orders.insert(_order("ORD-2026-000006", 1, t - timedelta(seconds=1)))
    pages = [[o["_id"] for o in await storage.orders.list_for_customer(1, limit=2, skip=skip)]
             for skip in (0, 2, 4, 6)]
    assert pages == [["ORD-2026-000005", "ORD-2026-000004"], ["ORD-2026-000003", "ORD-2026-000002"],
                     ["ORD-2026-000001", "ORD-2026-000006"], []]


@pytest.mark.gen_test(timeout=30)
async def test_order_transition_guard_wins_once(backend):
    storage = await backend.storage()
    await storage.orders.insert(_order("ORD-2026-000001", 1, _now()))
    racers = [
        storage.orders.transition("ORD-2026-000001", {"status": "HOLD"},
                                  {"status": "PROCESSING" if n % 2 else "CANCELLED"},
                                  history={"status": "PROCESSING" if n % 2 else "CANCELLED", "reason": f"r{n}"})
        for n in range(10)
    ]
    results = await asyncio.gather(*racers)
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    final = await storage.orders.get("ORD-2026-000001")
    assert final["status"] == winners[0]["status"] and len(final["history"]) == 1
    assert final["history"][0]["status"] == final["status"] and "at" in final["history"][0]
    assert await storage.orders.transition("ORD-2026-000001", {"status": "HOLD"}, {"status": "CANCELLED"}) is None
    moved = await storage.orders.transition("ORD-2026-000001", {"stock": "held"}, {"stock": "committed"})
    assert moved["stock"] == "committed" and moved["status"] == final["status"]


@pytest.mark.gen_test
async def test_order_delete_is_guarded(backend):
    storage = await backend.storage()
    await storage.orders.insert(_order("ORD-2026-000001", 1, _now(), stock="reserving"))
    assert await storage.orders.delete("ORD-2026-000001", {"stock": "held"}) is False
    assert await storage.orders.delete("ORD-2026-000001", {"stock": "reserving"}) is True
    assert await storage.orders.delete("ORD-2026-000001", {}) is False
    assert await storage.orders.get("ORD-2026-000001") is None


@pytest.mark.gen_test
async def test_orders_find_and_count_oldest_first(backend):
    storage = await backend.storage()
    t = _now()
    await storage.orders.insert(_order("ORD-2026-000001", 1, t - timedelta(minutes=1)))
    await storage.orders.insert(_order("ORD-2026-000002", 2, t - timedelta(minutes=5)))
    await storage.orders.insert(_order("ORD-2026-000003", 1, t, status="PROCESSING", stock="held"))
    await storage.orders.insert(_order("ORD-2026-000004", 1, t, stock="reserving"))
    hold = await storage.orders.find({"status": "HOLD", "stock": "held"})
    assert [o["_id"] for o in hold] == ["ORD-2026-000002", "ORD-2026-000001"]
    old = await storage.orders.find({"stock": "reserving", "created_at": {"$lt": t + timedelta(seconds=1)}})
    assert [o["_id"] for o in old] == ["ORD-2026-000004"]
    final_but_held = await storage.orders.find({"status": {"$in": ["PROCESSING", "CANCELLED"]}, "stock": "held"})
    assert [o["_id"] for o in final_but_held] == ["ORD-2026-000003"]
    assert len(await storage.orders.find({}, limit=2)) == 2
    assert await storage.orders.count({"customer": 1}) == 3



@pytest.mark.gen_test
async def test_the_sweepers_and_reconcilers_queries(backend):
    storage = await backend.storage()
    t = _now()
    overdue = {**_order("ORD-2026-000001", 1, t - timedelta(hours=1)), "hold_until": t - timedelta(minutes=1)}
    running = {**_order("ORD-2026-000002", 1, t), "hold_until": t + timedelta(minutes=30)}
    unrecorded = {**_order("ORD-2026-000003", 2, t - timedelta(minutes=5), stock="reserving"),
                  "hold_until": t - timedelta(minutes=1)}
    paid = _order("ORD-2026-000004", 2, t - timedelta(minutes=2), status="PROCESSING", stock="held")
    cancelled = _order("ORD-2026-000005", 1, t - timedelta(minutes=3), status="CANCELLED", stock="held")
    done = _order("ORD-2026-000006", 1, t, status="PROCESSING", stock="committed")
    for doc in (overdue, running, unrecorded, paid, cancelled, done):
        await storage.orders.insert(doc)
    assert [o.key for o in await storage.orders.overdue_holds(t)] == ["ORD-2026-000001"]
    assert [o.key for o in await storage.orders.interrupted_checkouts(t - timedelta(minutes=5))] == ["ORD-2026-000003"]
    assert await storage.orders.interrupted_checkouts(t - timedelta(minutes=6)) == []
    assert [o.key for o in await storage.orders.unfinished_settlements()] == ["ORD-2026-000005", "ORD-2026-000004"]
    assert sorted(o.key for o in await storage.orders.by_keys(["ORD-2026-000002", "ORD-2026-000009"])) == [
        "ORD-2026-000002"]
    assert await storage.orders.by_keys([]) == []
    # HOLD and PROCESSING, whatever their stock state; not CANCELLED.
    assert sorted(o.key for o in await storage.orders.holding_units()) == [
        "ORD-2026-000001", "ORD-2026-000002", "ORD-2026-000003", "ORD-2026-000004", "ORD-2026-000006"]
    assert [o.key for o in await storage.orders.holding_units(2)] == ["ORD-2026-000003", "ORD-2026-000004"]


# -- idempotency keys

@pytest.mark.gen_test(timeout=30)
async def test_idempotency_claim_finish_forget_purge(backend):
    storage = await backend.storage()
    keys = storage.idempotency
    assert await keys.claim("1:abc", "hash-1") is None
    running = await keys.claim("1:abc", "hash-1")
    assert running["state"] == "running" and running["request_hash"] == "hash-1"
    await keys.finish("1:abc", 200, {"order_key": "ORD-2026-000001"})
    done = await keys.claim("1:abc", "hash-2")
    assert done["state"] == "done" and done["status"] == 200
    assert done["body"] == {"order_key": "ORD-2026-000001"} and done["request_hash"] == "hash-1"
    # forget drops only a running claim.
    await keys.forget("1:abc")
    assert (await keys.claim("1:abc", "hash-1"))["state"] == "done"
    assert await keys.claim("1:xyz", "h") is None
    await keys.forget("1:xyz")
    assert await keys.claim("1:xyz", "h") is None
    # Racing claims: exactly one wins.
    results = await asyncio.gather(*(keys.claim("2:race", "h") for _ in range(10)))
    assert results.count(None) == 1
    assert await keys.purge_older_than(timedelta(hours=1)) == 0
    assert await keys.purge_older_than(timedelta(seconds=-1)) == 3
    assert await keys.claim("1:abc", "h") is None


@pytest.mark.gen_test
async def test_order_transition_keeps_types_and_applies_dotted_paths(backend):
    storage = await backend.storage()
    order = _order("ORD-2026-000001", 1, _now())
    order["payment"] = {"flow": "redirect", "reference": None}
    await storage.orders.insert(order)
    until = (_now() + timedelta(minutes=30)).replace(microsecond=0)
    moved = await storage.orders.transition(
        "ORD-2026-000001", {"status": "HOLD"},
        {"hold_until": until, "payment.reference": "pay_1", "payment.data": {"paid": True}, "flagged": True},
        history={"status": "HOLD", "reason": "payment started"})
    assert moved["payment"] == {"flow": "redirect", "reference": "pay_1", "data": {"paid": True}}
    for doc in (moved, await storage.orders.get("ORD-2026-000001")):
        assert doc["hold_until"].replace(tzinfo=UTC) == until
        assert doc["flagged"] is True and doc["payment"]["data"]["paid"] is True
        assert isinstance(doc["updated_at"], datetime)
        assert doc["history"][0]["reason"] == "payment started"
        assert isinstance(doc["history"][0]["at"], datetime)
    # A datetime written by transition can be queried as one (the hold sweeper's query).
    due = await storage.orders.find({"status": "HOLD", "hold_until": {"$lt": until + timedelta(seconds=1)}})
    assert [o["_id"] for o in due] == ["ORD-2026-000001"]
    assert await storage.orders.find({"status": "HOLD", "hold_until": {"$lt": until - timedelta(seconds=1)}}) == []


@pytest.mark.gen_test(timeout=30)
async def test_order_transitions_of_different_fields_both_apply(backend):
    storage = await backend.storage()
    await storage.orders.insert(_order("ORD-2026-000001", 1, _now()))
    a, b = await asyncio.gather(
        storage.orders.transition("ORD-2026-000001", {"status": "HOLD"}, {"status": "PROCESSING"},
                                  history={"status": "PROCESSING"}),
        storage.orders.transition("ORD-2026-000001", {"stock": "held"}, {"note": "checked"},
                                  history={"status": "HOLD", "reason": "note"}),
    )
    assert a is not None and b is not None
    final = await storage.orders.get("ORD-2026-000001")
    assert final["status"] == "PROCESSING" and final["note"] == "checked" and len(final["history"]) == 2


@pytest.mark.gen_test
async def test_customer_email_taken_is_case_insensitive_and_can_except_one(backend):
    storage = await backend.storage()
    ada = await storage.customers.create("h1", {"email": "Ada@Example.com"})
    await storage.customers.create("h2", {})  # no email at all
    assert await storage.customers.email_taken("ada@example.com") is True
    assert await storage.customers.email_taken("ADA@EXAMPLE.COM") is True
    assert await storage.customers.email_taken("ada@example.com", except_id=ada["_id"]) is False
    assert await storage.customers.email_taken("bob@example.com") is False
    # A profile update moves the key with the email.
    bob = await storage.customers.create("h3", {"email": "bob@example.com"})
    await storage.customers.update_profile(bob["_id"], {"email": "Robert@Example.com"})
    assert await storage.customers.email_taken("robert@example.com") is True
    assert await storage.customers.email_taken("bob@example.com") is False
    assert await storage.customers.email_taken("robert@example.com", except_id=bob["_id"]) is False
    assert (await storage.customers.get(bob["_id"]))["email"] == "Robert@Example.com"
