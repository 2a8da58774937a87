"""Emails are unique among customers, compared case-insensitively, on every endpoint that sets one."""

import pytest

from checkout_server.testing import TestShop

TAKEN = {"email": ["a customer with this email already exists"]}


@pytest.mark.gen_test
async def test_a_profile_cannot_take_another_customers_email():
    async with TestShop() as shop:
        await shop.customer(email="ada@example.com")
        bob = await shop.customer(email="bob@example.com")
        for email in ("ada@example.com", "ADA@Example.COM"):
            r = await bob.request("PATCH", "/api/shop/profile", {"email": email, "first_name": "Bobby"})
            assert r.status == 400 and r.body["fields"] == TAKEN, r
        # Nothing of the refused patch was written.
        profile = (await bob.request("GET", "/api/shop/profile")).body
        assert profile["email"] == "bob@example.com" and profile["first_name"] == "Ada"
        # One's own email, in another case, is still one's own.
        r = await bob.request("PATCH", "/api/shop/profile", {"email": "Bob@Example.com"})
        assert r.status == 200 and r.body["email"] == "Bob@Example.com"
        r = await bob.request("PATCH", "/api/shop/profile", {"email": "robert@example.com"})
        assert r.status == 200 and r.body["email"] == "robert@example.com"


@pytest.mark.gen_test
async def test_the_admin_cannot_create_a_customer_with_a_taken_email_in_any_case():
    async with TestShop() as shop:
        r = await shop.admin("POST", "/api/admin/customers", {"email": "Ada@Example.com"})
        assert r.status == 201
        for email in ("ada@example.com", "ADA@EXAMPLE.COM", "Ada@Example.com"):
            r = await shop.admin("POST", "/api/admin/customers", {"email": email})
            assert r.status == 400 and r.body["fields"] == TAKEN, r
        # A customer's new email is taken for the admin too.
        bob = await shop.customer(email="bob@example.com")
        assert (await bob.request("PATCH", "/api/shop/profile", {"email": "grace@example.com"})).status == 200
        r = await shop.admin("POST", "/api/admin/customers", {"email": "Grace@example.com"})
        assert r.status == 400 and r.body["fields"] == TAKEN
        assert (await shop.admin("POST", "/api/admin/customers", {"email": "bob@example.com"})).status == 201
