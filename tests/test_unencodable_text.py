"""A lone UTF-16 surrogate ("\\ud800" is valid JSON) is no UTF-8 text: 400 on every endpoint.

It used to reach the database driver and come back as a 500. `json_body` refuses it once for
all endpoints, naming the field.
"""

from __future__ import annotations

import checkout_fixtures as kit
import pytest

shop = kit.shop


def assert_refused(r, field: str) -> None:
    assert r.status == 400, r
    assert r.body == {"error": f"invalid request: {field}: not valid UTF-8", "fields": {field: ["not valid UTF-8"]}}


@pytest.mark.gen_test
async def test_customer_endpoints_refuse_a_lone_surrogate_naming_the_field():
    async with shop() as s:
        p = await s.product(stock=5)
        c = await s.customer(cart={p["_id"]: 1})
        assert_refused(await c.request("PATCH", "/api/shop/profile", raw_body=b'{"first_name": "A\\ud800"}'),
                       "first_name")
        assert_refused(await c.request("POST", "/api/shop/addresses", raw_body=(
            b'{"line1": "\\udfff", "city": "Berlin", "postal_code": "10115", "country": "DE"}')), "line1")
        body = b'{"address": %d, "payment_method": %d, "shipping_method": %d, "notes": "x\\udc00y"}' % (
            c.address_id, kit.DIRECT, kit.FLAT)
        assert_refused(await c.request("POST", "/api/shop/checkout/cart", raw_body=body), "notes")
        # A paired surrogate escape is a real character: accepted.
        r = await c.request("PATCH", "/api/shop/profile", raw_body=b'{"first_name": "Ada \\ud83d\\ude00"}')
        assert r.status == 200 and r.body["first_name"] == "Ada \U0001F600"
        # Nothing was written by the refused requests.
        customer = await s.storage.customers.get(c.id)
        assert len(customer["addresses"]) == 1 and await s.storage.orders.count({}) == 0


@pytest.mark.gen_test
async def test_admin_endpoints_refuse_it_too_in_values_and_keys():
    async with shop() as s:
        assert_refused(await s.request("POST", "/api/admin/products", token=s.ADMIN_TOKEN,
                                       raw_body=b'{"name": "\\ud800", "price": 1, "stock": 1}'), "name")
        p = await s.product(stock=5)
        assert_refused(await s.request("PATCH", f"/api/admin/products/{p['_id']}",
                                       raw_body=b'{"name": "ok", "tags": ["fine", "\\ud800"]}',
                                       token=s.ADMIN_TOKEN), "tags.1")
        r = await s.request("POST", "/api/admin/customers", raw_body=b'{"\\ud800": 1}', token=s.ADMIN_TOKEN)
        assert r.status == 400 and r.body["error"].endswith("not valid UTF-8")
        assert (await s.storage.products.get(p["_id"]))["name"] == p["name"]
