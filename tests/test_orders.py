"""Orders API: the customer's own orders, and the admin's view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import checkout_fixtures as kit
import pytest

from checkout_server.stock import commits

DETAIL_FIELDS = {"order_key", "status", "items", "subtotal", "shipping_cost", "total", "currency",
                 "payment_method", "shipping_method", "address", "notes", "created_at"}


shop = kit.shop


@pytest.mark.gen_test
async def test_list_newest_first_and_detail_fields():
    async with shop() as s:
        p = await s.product(stock=10)
        c = await s.customer()
        keys = []
        for method in (kit.DIRECT, kit.REDIRECT):
            await s.storage.customers.add_to_cart(c.id, p["_id"], 1)
            r = await c.checkout(method, kit.FLAT)
            keys.append(r.body.get("order_key") or r.body["next_step"].rsplit("/", 1)[1])
        r = await c.request("GET", "/api/shop/orders")
        assert r.status == 200 and [o["order_key"] for o in r.body] == keys[::-1]
        r = await c.request("GET", f"/api/shop/orders/{keys[1]}")
        assert r.status == 200 and DETAIL_FIELDS <= set(r.body)
        assert r.body["status"] == "HOLD" and r.body["next_step"].endswith(keys[1])
        assert "customer" not in r.body and "stock" not in r.body


@pytest.mark.gen_test
async def test_another_customers_order_is_404_like_a_missing_one():
    async with shop() as s:
        p = await s.product(stock=10)
        a = await s.customer(cart={p["_id"]: 1})
        b = await s.customer()
        key = (await a.checkout(kit.DIRECT, kit.FLAT)).body["order_key"]
        theirs = await b.request("GET", f"/api/shop/orders/{key}")
        missing = await b.request("GET", "/api/shop/orders/ORD-2026-999999")
        assert theirs.status == missing.status == 404 and theirs.body == missing.body
        assert (await b.request("GET", "/api/shop/orders")).body == []
        assert (await s.request("GET", "/api/shop/orders")).status == 401


@pytest.mark.gen_test
async def test_admin_sees_any_order_customers_do_not():
    async with shop() as s:
        p = await s.product(stock=10)
        c = await s.customer(cart={p["_id"]: 1})
        key = (await c.checkout(kit.DIRECT, kit.FLAT)).body["order_key"]
        await commits.flush(s.storage)  # the batch finishing paid orders: now, not in a moment
        r = await s.admin("GET", f"/api/admin/orders/{key}")
        assert r.status == 200 and r.body["customer"] == c.id and r.body["stock"] == "committed"
        assert (await c.request("GET", f"/api/admin/orders/{key}")).status == 403
        assert (await s.request("GET", f"/api/admin/orders/{key}")).status == 401
        assert (await s.admin("GET", "/api/admin/orders/ORD-2026-999999")).status == 404


async def placed_orders(s, customer, count: int) -> list[str]:
    """`count` orders of `customer`, written straight to storage; their keys newest first."""
    t = datetime.now(UTC)
    keys = []
    for n in range(count):
        key = f"ORD-2026-{n + 1:06d}"
        await s.storage.orders.insert({
            "_id": key, "customer": customer.id, "status": "CANCELLED", "stock": "released",
            "items": [], "subtotal": 0, "shipping_cost": 0, "total": 0, "currency": "EUR",
            "created_at": t + timedelta(seconds=n), "updated_at": t, "history": []})
        keys.append(key)
    return keys[::-1]


@pytest.mark.gen_test
async def test_the_orders_list_comes_in_pages():
    async with shop() as s:
        c = await s.customer()
        keys = await placed_orders(s, c, 55)

        async def page(query: str) -> list[str]:
            r = await c.request("GET", f"/api/shop/orders{query}")
            assert r.status == 200, r
            return [o["order_key"] for o in r.body]

        assert await page("") == keys[:50]  # 50 by default
        assert await page("?skip=50") == keys[50:]  # a shorter page is the last
        assert await page("?limit=100") == keys
        assert await page("?limit=2&skip=3") == keys[3:5]
        assert await page("?limit=1") == keys[:1]
        assert await page("?skip=55") == []


@pytest.mark.gen_test
@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=abc", "limit"), ("limit=", "limit"),
    ("limit=-1", "limit"), ("limit=1&limit=2", "limit"), ("limit=%EF%BC%91", "limit"),
    ("skip=-1", "skip"), ("skip=x", "skip"), ("skip=1.5", "skip"), ("skip=99999999999", "skip"),
])
async def test_a_bad_page_is_400_naming_the_parameter(query, field):
    async with shop() as s:
        c = await s.customer()
        r = await c.request("GET", f"/api/shop/orders?{query}")
        assert r.status == 400 and list(r.body["fields"]) == [field], r.body
        assert r.body["error"].startswith(f"invalid query: {field}: must be an integer from ")
