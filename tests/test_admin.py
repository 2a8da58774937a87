"""POST/GET/PATCH /api/admin/products, POST /api/admin/customers."""

import functools

import pytest
from badinput import MALFORMED, OPERATORS, assert_refused, snapshot

from checkout_server.testing import TestShop

MUG = {"name": "Mug", "price": 1200, "stock": 10}


@pytest.mark.gen_test
async def test_create_get_and_patch_a_product():
    async with TestShop(config={"site": {"currency": "USD"}}) as shop:
        r = await shop.admin("POST", "/api/admin/products", {**MUG, "weight": 350})
        assert r.status == 201
        mug = r.body
        assert mug == {"id": mug["id"], "name": "Mug", "price": 1200, "currency": "USD", "stock": 10,
                       "received": 10, "held": 0, "digital": False, "weight": 350, "active": True}
        r = await shop.admin("POST", "/api/admin/products",
                             {"name": "E-book", "price": 900, "stock": 0, "digital": True, "active": False})
        assert r.body["digital"] is True and r.body["active"] is False and r.body["id"] != mug["id"]
        assert (await shop.admin("GET", f"/api/admin/products/{mug['id']}")).body == mug
        r = await shop.admin("PATCH", f"/api/admin/products/{mug['id']}",
                             {"price": 1500, "name": "Large mug", "active": False, "weight": 400})
        assert r.status == 200
        assert r.body == {**mug, "price": 1500, "name": "Large mug", "active": False, "weight": 400}
        assert (await shop.admin("GET", f"/api/admin/products/{mug['id']}")).body == r.body
        for bad in ("424242", "abc", "-1", "%24gt"):
            r = await shop.admin("GET", f"/api/admin/products/{bad}")
            assert r.status == 404 and "error" in r.body
        assert (await shop.admin("PATCH", "/api/admin/products/424242", {"price": 1})).status == 404


@pytest.mark.gen_test
async def test_patching_stock_books_a_restock_or_write_off():
    async with TestShop() as shop:
        mug = (await shop.admin("POST", "/api/admin/products", MUG)).body
        # A checkout holds 3 units.
        assert await shop.storage.products.reserve("ORD-2026-000001", {mug["id"]: 3}) == 1
        r = await shop.admin("GET", f"/api/admin/products/{mug['id']}")
        assert (r.body["stock"], r.body["received"], r.body["held"]) == (7, 10, 3)
        # Stock set to 20: a restock of 13; the ledger stays true.
        r = await shop.admin("PATCH", f"/api/admin/products/{mug['id']}", {"stock": 20})
        assert (r.body["stock"], r.body["received"], r.body["held"]) == (20, 23, 3)
        # Stock set to 5: a write-off of 15.
        r = await shop.admin("PATCH", f"/api/admin/products/{mug['id']}", {"stock": 5, "price": 999})
        assert (r.body["stock"], r.body["received"], r.body["price"]) == (5, 8, 999)
        assert r.body["received"] == r.body["stock"] + r.body["held"]


@pytest.mark.gen_test
async def test_product_endpoints_refuse_bad_input_and_change_nothing():
    async with TestShop() as shop:
        mug = (await shop.admin("POST", "/api/admin/products", MUG)).body
        post = functools.partial(shop.request, "POST", "/api/admin/products", token=TestShop.ADMIN_TOKEN)
        await assert_refused(shop, post, MALFORMED + [
            {}, {"name": "X", "price": 1}, {**MUG, "price": -1}, {**MUG, "price": "12"},
            {**MUG, "price": 12.5}, {**MUG, "price": True}, {**MUG, "stock": -1}, {**MUG, "stock": 10**10},
            {**MUG, "name": ""}, {**MUG, "name": "x" * 201}, {**MUG, "digital": 1}, {**MUG, "digital": "yes"},
            {**MUG, "weight": -5}, {**MUG, "active": None}, {**MUG, "id": 5}, {**MUG, "received": 5},
            {**MUG, "holds": {}}, {**MUG, "price": 10**13},
        ] + [{**MUG, "name": op} for op in OPERATORS] + [{**MUG, "price": op} for op in OPERATORS])
        patch = functools.partial(shop.request, "PATCH", f"/api/admin/products/{mug['id']}",
                                  token=TestShop.ADMIN_TOKEN)
        await assert_refused(shop, patch, MALFORMED + [
            {"price": -1}, {"stock": "5"}, {"stock": -1}, {"stock": True}, {"active": "false"},
            {"received": 100}, {"holds": {"ORD-1": 1}}, {"id": 9}, {"name": None},
        ] + [{"stock": op} for op in OPERATORS] + [{"$inc": {"stock": 5}}])


@pytest.mark.gen_test
async def test_create_customer_shows_the_token_once():
    async with TestShop() as shop:
        r = await shop.admin("POST", "/api/admin/customers",
                             {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
                              "phone": "+44 20 7946 0000"})
        assert r.status == 201
        token = r.body.pop("token")
        assert len(token) >= 32
        assert r.body == {"id": r.body["id"], "first_name": "Ada", "last_name": "Lovelace",
                          "email": "ada@example.com", "phone": "+44 20 7946 0000", "complete": True}
        profile = await shop.request("GET", "/api/shop/profile", token=token)
        assert profile.body == r.body
        # No endpoint shows the token again.
        assert token not in profile.raw.decode()
        r2 = await shop.admin("POST", "/api/admin/customers", {})
        assert r2.status == 201 and r2.body["complete"] is False and r2.body["token"] != token
        # One customer per email: a second with the same email is refused, nothing created.
        r3 = await shop.admin("POST", "/api/admin/customers", {"email": "ada@example.com"})
        assert r3.status == 400 and r3.body["fields"] == {"email": ["a customer with this email already exists"]}
        assert await shop.storage.customers.get(r2.body["id"] + 1) is None


@pytest.mark.gen_test
async def test_create_customer_refuses_bad_input_and_changes_nothing():
    async with TestShop() as shop:
        request = functools.partial(shop.request, "POST", "/api/admin/customers", token=TestShop.ADMIN_TOKEN)
        await assert_refused(shop, request, MALFORMED + [
            {"email": "nope"}, {"first_name": 1}, {"token": "mine"}, {"token_hash": "x"}, {"id": 1},
            {"addresses": {}}, {"cart": {"1": 1}},
        ] + [{"email": op} for op in OPERATORS])


@pytest.mark.gen_test
async def test_admin_endpoints_refuse_customers_and_strangers():
    async with TestShop() as shop:
        mug = await shop.product("Mug")
        customer = await shop.customer()
        before = await snapshot(shop.storage)
        calls = (("POST", "/api/admin/products", MUG), ("GET", f"/api/admin/products/{mug['_id']}", None),
                 ("PATCH", f"/api/admin/products/{mug['_id']}", {"price": 1}),
                 ("POST", "/api/admin/customers", {"first_name": "Eve"}))
        for method, path, body in calls:
            assert (await customer.request(method, path, body)).status == 403
            for token in (None, "wrong"):
                r = await shop.request(method, path, body, token=token)
                assert r.status == 401 and "error" in r.body
        assert await snapshot(shop.storage) == before
