"""GET/PATCH /api/shop/profile, GET/POST /api/shop/addresses, DELETE /api/shop/addresses/{id}."""

import functools

import pytest
from badinput import MALFORMED, OPERATORS, assert_refused, snapshot

from checkout_server.testing import TestShop

ADDRESS = {"line1": "12 Rue de Rivoli", "city": "Paris", "postal_code": "75001", "country": "FR"}


@pytest.mark.gen_test
async def test_profile_get_and_patch_with_complete():
    async with TestShop() as shop:
        customer = await shop.customer(complete=False)
        r = await customer.request("GET", "/api/shop/profile")
        assert r.status == 200
        assert r.body == {"id": customer.id, "first_name": None, "last_name": None, "email": None,
                          "phone": None, "complete": False}
        r = await customer.request("PATCH", "/api/shop/profile", {"first_name": " Grace ", "last_name": "Hopper"})
        assert r.status == 200 and r.body["first_name"] == "Grace" and r.body["complete"] is False
        r = await customer.request("PATCH", "/api/shop/profile", {"email": "grace@example.com",
                                                                  "phone": "+1 212 555 0100"})
        assert r.body["complete"] is True and r.body["last_name"] == "Hopper"
        assert (await customer.request("GET", "/api/shop/profile")).body == r.body
        # An empty patch changes nothing.
        assert (await customer.request("PATCH", "/api/shop/profile", {})).body == r.body


@pytest.mark.gen_test
async def test_profile_patch_refuses_bad_input_and_changes_nothing():
    async with TestShop() as shop:
        customer = await shop.customer()
        patch = functools.partial(customer.request, "PATCH", "/api/shop/profile")
        await assert_refused(shop, patch, MALFORMED + [
            {"first_name": 5}, {"first_name": True}, {"first_name": None}, {"first_name": ""},
            {"first_name": "   "}, {"first_name": "a" * 101}, {"email": "not-an-email"},
            {"email": "a@" + "b" * 300 + ".com"}, {"phone": "call me"}, {"phone": "1" * 40},
            {"token_hash": "x"}, {"id": 5}, {"complete": True}, {"cart": {"1": 5}},
            {"first_name": "A\x00B"},
        ] + [{"first_name": op} for op in OPERATORS] + [{"$set": {"first_name": "x"}}])


@pytest.mark.gen_test
async def test_profile_needs_a_token():
    async with TestShop() as shop:
        customer = await shop.customer()
        before = await snapshot(shop.storage)
        for token in (None, "wrong"):
            r = await shop.request("PATCH", "/api/shop/profile", {"first_name": "X"}, token=token)
            assert r.status == 401 and "error" in r.body
            assert (await shop.request("GET", "/api/shop/profile", token=token)).status == 401
        assert await snapshot(shop.storage) == before
        assert (await customer.request("GET", "/api/shop/profile")).status == 200


@pytest.mark.gen_test
async def test_addresses_add_list_delete():
    async with TestShop() as shop:
        customer = await shop.customer(address=False)
        assert (await customer.request("GET", "/api/shop/addresses")).body == []
        r = await customer.request("POST", "/api/shop/addresses", {**ADDRESS, "country": "fr", "line2": "Apt 4"})
        assert r.status == 201
        paris = r.body
        assert paris == {"id": paris["id"], **ADDRESS, "line2": "Apt 4"}
        r = await customer.request("POST", "/api/shop/addresses", {**ADDRESS, "city": "Lyon"})
        lyon = r.body
        assert lyon["line2"] == "" and lyon["id"] != paris["id"]
        listed = (await customer.request("GET", "/api/shop/addresses")).body
        assert listed == [paris, lyon]
        r = await customer.request("DELETE", f"/api/shop/addresses/{paris['id']}")
        assert r.status == 204 and r.raw == b""
        assert (await customer.request("GET", "/api/shop/addresses")).body == [lyon]
        r = await customer.request("DELETE", f"/api/shop/addresses/{paris['id']}")
        assert r.status == 404 and "error" in r.body


@pytest.mark.gen_test
async def test_another_customers_address_answers_as_a_missing_one():
    async with TestShop() as shop:
        ada = await shop.customer()
        bob = await shop.customer(email="bob@example.com")
        theirs = await bob.request("DELETE", f"/api/shop/addresses/{ada.address_id}")
        missing = await bob.request("DELETE", "/api/shop/addresses/987654")
        assert theirs.status == missing.status == 404 and theirs.body == missing.body
        for bad in ("abc", "-1", "1.5", "%24gt", "99999999999999999999", "١"):
            r = await bob.request("DELETE", f"/api/shop/addresses/{bad}")
            assert r.status == 404 and r.body == missing.body, bad
        assert [a["id"] for a in (await ada.request("GET", "/api/shop/addresses")).body] == [ada.address_id]
        assert [a["id"] for a in (await bob.request("GET", "/api/shop/addresses")).body] == [bob.address_id]


@pytest.mark.gen_test
async def test_address_post_refuses_bad_input_and_changes_nothing():
    async with TestShop() as shop:
        customer = await shop.customer()
        post = functools.partial(customer.request, "POST", "/api/shop/addresses")
        await assert_refused(shop, post, MALFORMED + [
            {}, {**ADDRESS, "country": "XX"}, {**ADDRESS, "country": "FRA"}, {**ADDRESS, "country": 33},
            {k: v for k, v in ADDRESS.items() if k != "city"}, {**ADDRESS, "line1": ""},
            {**ADDRESS, "line1": "x" * 201}, {**ADDRESS, "postal_code": "1" * 21}, {**ADDRESS, "id": 7},
            {**ADDRESS, "owner": 2}, {**ADDRESS, "city": ["Paris"]}, {**ADDRESS, "line2": None},
        ] + [{**ADDRESS, "country": op} for op in OPERATORS] + [{**ADDRESS, "city": op} for op in OPERATORS])
        r = await shop.request("POST", "/api/shop/addresses", ADDRESS)
        assert r.status == 401


@pytest.mark.gen_test
async def test_address_book_is_bounded():
    from checkout_server.handlers.account import MAX_ADDRESSES

    async with TestShop() as shop:
        customer = await shop.customer(address=False)
        for _ in range(MAX_ADDRESSES):
            await shop.storage.customers.add_address(customer.id, dict(ADDRESS, line2=""))
        r = await customer.request("POST", "/api/shop/addresses", ADDRESS)
        assert r.status == 400 and "at most" in r.body["error"]
