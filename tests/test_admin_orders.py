"""Admin order list: every customer's orders, newest first, filtered and paged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import checkout_fixtures as kit
import pytest

shop = kit.shop


async def placed(s, rows) -> list[str]:
    """Orders written straight to storage from (customer, status, refund_needed); keys newest first."""
    t = datetime.now(UTC)
    keys = []
    for n, (customer, status, refund_needed) in enumerate(rows):
        key = f"ORD-2026-{n + 1:06d}"
        payment = {"provider": "test_redirect"}
        if refund_needed is not None:
            payment["refund_needed"] = refund_needed
        await s.storage.orders.insert({
            "_id": key, "customer": customer, "status": status,
            "stock": {"HOLD": "held", "PROCESSING": "committed", "CANCELLED": "released"}[status],
            "items": [], "subtotal": 0, "shipping_cost": 0, "total": 0, "currency": "EUR",
            "payment": payment, "created_at": t + timedelta(seconds=n), "updated_at": t, "history": []})
        keys.append(key)
    return keys[::-1]


@pytest.mark.gen_test
async def test_admin_lists_every_order_newest_first_with_filters():
    async with shop() as s:
        a, b = await s.customer(), await s.customer(email="b@example.com")
        keys = await placed(s, [(a.id, "HOLD", None), (b.id, "PROCESSING", None), (a.id, "CANCELLED", True),
                                (b.id, "CANCELLED", False), (a.id, "PROCESSING", None)])
        # keys newest first: 5 (a PROCESSING), 4 (b CANCELLED), 3 (a CANCELLED refund), 2 (b PROCESSING), 1 (a HOLD)

        async def listed(query: str = "") -> list[str]:
            r = await s.admin("GET", f"/api/admin/orders{query}")
            assert r.status == 200, r
            return [o["order_key"] for o in r.body]

        assert await listed() == keys
        assert await listed("?status=CANCELLED") == [keys[1], keys[2]]
        assert await listed(f"?customer={a.id}") == [keys[0], keys[2], keys[4]]
        assert await listed(f"?customer={a.id}&status=PROCESSING") == [keys[0]]
        assert await listed("?refund_needed=true") == [keys[2]]
        assert await listed("?refund_needed=0") == [keys[0], keys[1], keys[3], keys[4]]
        assert await listed("?limit=2&skip=1") == keys[1:3]
        assert await listed("?customer=999") == []
        r = await s.admin("GET", "/api/admin/orders?limit=1")
        # The admin's view of each order: customer, stock state and payment record included.
        assert r.body[0]["customer"] == a.id and r.body[0]["stock"] == "committed"
        assert r.body[0]["payment"]["provider"] == "test_redirect"


@pytest.mark.gen_test
async def test_only_the_admin_lists_orders():
    async with shop() as s:
        c = await s.customer()
        assert (await c.request("GET", "/api/admin/orders")).status == 403
        assert (await s.request("GET", "/api/admin/orders")).status == 401


@pytest.mark.gen_test
async def test_orders_being_checked_out_are_not_listed():
    async with shop() as s:
        c = await s.customer()
        await placed(s, [(c.id, "PROCESSING", None)])
        await s.storage.orders.insert({"_id": "ORD-2026-000009", "customer": c.id, "status": "HOLD",
                                       "stock": "reserving", "items": [], "total": 0, "currency": "EUR",
                                       "created_at": datetime.now(UTC), "history": []})
        r = await s.admin("GET", "/api/admin/orders")
        assert [o["order_key"] for o in r.body] == ["ORD-2026-000001"]


@pytest.mark.gen_test
@pytest.mark.parametrize("query, field", [
    ("status=PAID", "status"), ("status=hold", "status"), ("status=HOLD&status=CANCELLED", "status"),
    ("customer=abc", "customer"), ("customer=0", "customer"), ("customer=-1", "customer"),
    ("customer=1&customer=2", "customer"), ("customer=%7B%22%24ne%22%3A1%7D", "customer"),
    ("refund_needed=yes", "refund_needed"), ("refund_needed=", "refund_needed"),
    ("limit=0", "limit"), ("limit=101", "limit"), ("skip=-1", "skip"), ("skip=x", "skip"),
    ("sort=created_at", "sort"), ("status[$ne]=HOLD", "status[$ne]"),
])
async def test_a_bad_filter_is_400_naming_the_field(query, field):
    async with shop() as s:
        r = await s.admin("GET", f"/api/admin/orders?{query}")
        assert r.status == 400 and list(r.body["fields"]) == [field], r.body
        assert r.body["error"].startswith("invalid query: ")
