"""Storage contract: what the admin's order list, cancel and refund rely on, on every backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest


def _order(key, customer, created_at, status="PROCESSING", stock="committed", payment=None):
    return {"_id": key, "customer": customer, "status": status, "stock": stock, "items": [],
            "total": 100, "currency": "EUR", "created_at": created_at, "updated_at": created_at,
            "history": [], "payment": payment or {"provider": "stripe"}}


async def _place(storage) -> datetime:
    t = datetime.now(UTC)
    await storage.orders.insert(_order("ORD-2026-000001", 1, t - timedelta(minutes=5), status="HOLD", stock="held"))
    await storage.orders.insert(_order("ORD-2026-000002", 2, t - timedelta(minutes=4), status="CANCELLED",
                                       stock="released", payment={"provider": "stripe", "refund_needed": True}))
    await storage.orders.insert(_order("ORD-2026-000003", 1, t - timedelta(minutes=3)))
    await storage.orders.insert(_order("ORD-2026-000004", 1, t - timedelta(minutes=2), stock="reserving",
                                       status="HOLD"))
    await storage.orders.insert(_order("ORD-2026-000005", 2, t - timedelta(minutes=1), status="CANCELLED",
                                       stock="released", payment={"provider": "paypal", "refund_needed": False}))
    return t


def _keys(orders) -> list[str]:
    return [o["_id"] for o in orders]


@pytest.mark.gen_test
async def test_admin_list_newest_first_filtered_and_paged(backend):
    storage = await backend.storage()
    await _place(storage)
    listed = storage.orders.list_for_admin
    assert _keys(await listed()) == ["ORD-2026-000005", "ORD-2026-000003", "ORD-2026-000002", "ORD-2026-000001"]
    assert _keys(await listed(status="CANCELLED")) == ["ORD-2026-000005", "ORD-2026-000002"]
    assert _keys(await listed(customer=1)) == ["ORD-2026-000003", "ORD-2026-000001"]
    assert _keys(await listed(status="HOLD", customer=1)) == ["ORD-2026-000001"]
    assert _keys(await listed(refund_needed=True)) == ["ORD-2026-000002"]
    assert _keys(await listed(refund_needed=False)) == ["ORD-2026-000005", "ORD-2026-000003", "ORD-2026-000001"]
    assert _keys(await listed(refund_needed=True, customer=1)) == []
    assert _keys(await listed(limit=2, skip=1)) == ["ORD-2026-000003", "ORD-2026-000002"]
    assert await listed(status="PROCESSING", customer=2) == []


@pytest.mark.gen_test
async def test_refund_flags_written_by_transition_are_found(backend):
    storage = await backend.storage()
    await _place(storage)
    await storage.orders.transition("ORD-2026-000003", {"status": "PROCESSING"},
                                    {"payment.refund_needed": True, "payment.refund_pending": True})
    assert _keys(await storage.orders.list_for_admin(refund_needed=True)) == ["ORD-2026-000003", "ORD-2026-000002"]
    assert _keys(await storage.orders.with_pending_refunds()) == ["ORD-2026-000003"]
    await storage.orders.transition("ORD-2026-000003", {"status": "PROCESSING"},
                                    {"payment.refund_needed": False, "payment.refund_pending": False})
    assert _keys(await storage.orders.list_for_admin(refund_needed=True)) == ["ORD-2026-000002"]
    assert await storage.orders.with_pending_refunds() == []
    got = await storage.orders.get("ORD-2026-000003")
    assert got["payment"]["refund_needed"] is False and got["payment"]["refund_pending"] is False


@pytest.mark.gen_test(timeout=30)
async def test_transition_with_a_change_computed_from_the_order_loses_no_racer(backend):
    # Ten writers each append one refund to the same list: a change computed from a stale
    # read would drop the others'; computed from the order as it is now, all ten stay.
    storage = await backend.storage()
    await _place(storage)
    clients = [await backend.another_client() for _ in range(3)]

    def append(n):
        def change(order):
            refunds = order["payment"].get("refunds", [])
            return {"payment.refunds": [*refunds, {"id": f"r{n}", "amount": 10 + n,
                                                   "at": datetime.now(UTC)}]}
        return change

    await asyncio.gather(*(
        (clients[n % 3] if backend.wire else storage).orders.transition(
            "ORD-2026-000003", {"status": "PROCESSING"}, append(n), history={"status": "PROCESSING", "reason": f"{n}"})
        for n in range(10)))
    got = await storage.orders.get("ORD-2026-000003")
    refunds = got["payment"]["refunds"]
    assert sorted(r["id"] for r in refunds) == sorted(f"r{n}" for n in range(10))
    assert all(isinstance(r["at"], datetime) and isinstance(r["amount"], int) for r in refunds)
    assert len(got["history"]) == 10


@pytest.mark.gen_test
async def test_a_change_function_that_raises_writes_nothing(backend):
    storage = await backend.storage()
    await _place(storage)

    def refuse(order):
        raise LookupError("nothing left")

    with pytest.raises(LookupError):
        await storage.orders.transition("ORD-2026-000003", {"status": "PROCESSING"}, refuse)
    got = await storage.orders.get("ORD-2026-000003")
    assert got["rev"] == 0 and "refunds" not in got["payment"]
