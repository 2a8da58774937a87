"""What the checkout's limits per customer read: orders awaiting payment, stored keys."""

from __future__ import annotations

import pytest

from checkout_server import clock


def _order(key: str, customer: int, status: str, quantities: list[int]) -> dict:
    now = clock.utcnow()
    return {"_id": key, "customer": customer, "status": status, "stock": "held",
            "items": [{"product": n + 1, "name": f"P{n + 1}", "quantity": q, "unit_price": 100,
                       "line_total": 100 * q} for n, q in enumerate(quantities)],
            "total": 100 * sum(quantities), "created_at": now, "updated_at": now}


@pytest.mark.gen_test(timeout=30)
async def test_orders_awaiting_payment_of_one_customer(backend):
    storage = await backend.storage()
    await storage.orders.insert(_order("ORD-2026-000001", 7, "HOLD", [2, 3]))
    await storage.orders.insert(_order("ORD-2026-000002", 7, "PROCESSING", [4]))
    await storage.orders.insert(_order("ORD-2026-000003", 7, "CANCELLED", [5]))
    await storage.orders.insert(_order("ORD-2026-000004", 8, "HOLD", [6]))
    await storage.orders.insert(_order("ORD-2026-000005", 7, "HOLD", [1]))

    held = await storage.orders.awaiting_payment(7, limit=10)
    assert sorted(o["_id"] for o in held) == ["ORD-2026-000001", "ORD-2026-000005"]
    # Only what the limits need, the items whole (quantities are integers on every backend).
    assert {o["_id"]: [i["quantity"] for i in o["items"]] for o in held} == {
        "ORD-2026-000001": [2, 3], "ORD-2026-000005": [1]}
    assert all(set(o) == {"_id", "items"} for o in held)
    assert len(await storage.orders.awaiting_payment(7, limit=1)) == 1
    assert await storage.orders.awaiting_payment(9, limit=10) == []


@pytest.mark.gen_test(timeout=30)
async def test_keys_counted_per_customer_up_to_a_limit(backend):
    storage = await backend.storage()
    keys = storage.idempotency
    for n in range(5):
        assert await keys.claim(f"7:k{n}", "h", customer=7) is None
    assert await keys.claim("8:k0", "h", customer=8) is None
    assert await keys.claim("7:old", "h") is None  # stored before keys named their customer
    await keys.finish("7:k0", 200, {"order_key": "ORD-2026-000001"})
    await keys.forget("7:k1")

    assert await keys.count_for_customer(7, limit=100) == 4  # done or running, not forgotten
    assert await keys.count_for_customer(7, limit=2) == 2
    assert await keys.count_for_customer(8, limit=100) == 1
    assert await keys.count_for_customer(9, limit=100) == 0
    # A repeated claim of a stored key stores nothing more.
    assert (await keys.claim("7:k2", "h", customer=7))["state"] == "running"
    assert await keys.count_for_customer(7, limit=100) == 4


@pytest.mark.gen_test(timeout=30)
async def test_last_checkout_keeps_its_record_of_unpaid_orders(backend):
    # The checkout's limits read it back from the lock's read of the customer.
    storage = await backend.storage()
    doc = await storage.customers.create("hash", {"first_name": "Ada"})
    await storage.customers.acquire_checkout_lock(doc["_id"], 60)
    record = {"fingerprint": "f" * 64, "order_key": "ORD-2026-000002",
              "unpaid": {"ORD-2026-000001": 3, "ORD-2026-000002": 1}}
    await storage.customers.release_checkout_lock(doc["_id"], record)
    again = await storage.customers.acquire_checkout_lock(doc["_id"], 60)
    assert again["last_checkout"] == record
    # A later record replaces it whole (a pruned order is gone).
    smaller = {**record, "unpaid": {"ORD-2026-000002": 1}}
    await storage.customers.release_checkout_lock(doc["_id"], smaller, as_read=again,
                                                  held=again["checkout_lock"])
    assert (await storage.customers.get(doc["_id"]))["last_checkout"] == smaller
