"""Storage operations the checkout, settlement and sandbox use, on every backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from checkout_server import reservations
from checkout_server.providers import PaymentCheck, PaymentState
from checkout_server.settlement import settle


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
async def test_sandbox_payment_is_decided_once(backend):
    storage = await backend.storage()
    created = await storage.sandbox_payments.create("ORD-2026-000001", 2500, "EUR", "http://x/return?order=1")
    ref = created["_id"]
    got = await storage.sandbox_payments.get(ref)
    assert (got["state"], got["amount"], got["currency"], got["order_key"]) == ("created", 2500, "EUR", "ORD-2026-000001")
    decided = await asyncio.gather(storage.sandbox_payments.decide(ref, "paid"),
                                   storage.sandbox_payments.decide(ref, "cancelled"))
    assert sum(d is not None for d in decided) == 1
    assert (await storage.sandbox_payments.get(ref))["state"] in ("paid", "cancelled")
    assert await storage.sandbox_payments.get("sbx_unknown") is None
    assert await storage.sandbox_payments.decide("sbx_unknown", "paid") is None


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
