"""GET /api/shop/cart, POST /api/shop/cart/items, PUT/DELETE /api/shop/cart/items/{product}."""

import functools

import pytest
from badinput import MALFORMED, OPERATORS, assert_refused, snapshot

from checkout_server.schemas import MAX_QUANTITY_PER_LINE
from checkout_server.testing import TestShop

CONFIG = {"site": {"currency": "GBP"}}


@pytest.mark.gen_test
async def test_cart_add_set_remove_with_current_prices():
    async with TestShop(config=CONFIG) as shop:
        mug = await shop.product("Mug", price=1200)
        pen = await shop.product("Pen", price=250)
        customer = await shop.customer()
        r = await customer.request("GET", "/api/shop/cart")
        assert r.status == 200 and r.body == {"items": [], "subtotal": 0, "currency": "GBP"}
        r = await customer.request("POST", "/api/shop/cart/items", {"product": mug["_id"], "quantity": 2})
        assert r.status == 200
        assert r.body == {"items": [{"product": mug["_id"], "name": "Mug", "quantity": 2, "unit_price": 1200,
                                     "line_total": 2400}], "subtotal": 2400, "currency": "GBP"}
        # Adding again adds to the line.
        await customer.request("POST", "/api/shop/cart/items", {"product": mug["_id"], "quantity": 1})
        r = await customer.request("POST", "/api/shop/cart/items", {"product": pen["_id"], "quantity": 4})
        assert [(i["product"], i["quantity"]) for i in r.body["items"]] == [(mug["_id"], 3), (pen["_id"], 4)]
        assert r.body["subtotal"] == 3 * 1200 + 4 * 250
        # The cart shows the product's current name and price.
        await shop.storage.products.update(mug["_id"], {"price": 1000, "name": "Big mug"})
        r = await customer.request("GET", "/api/shop/cart")
        assert r.body["items"][0] == {"product": mug["_id"], "name": "Big mug", "quantity": 3,
                                      "unit_price": 1000, "line_total": 3000}
        r = await customer.request("PUT", f"/api/shop/cart/items/{pen['_id']}", {"quantity": 7})
        assert r.body["items"][1]["quantity"] == 7 and r.body["subtotal"] == 3000 + 7 * 250
        r = await customer.request("PUT", f"/api/shop/cart/items/{pen['_id']}", {"quantity": 0})
        assert [i["product"] for i in r.body["items"]] == [mug["_id"]]
        r = await customer.request("DELETE", f"/api/shop/cart/items/{mug['_id']}")
        assert r.status == 200 and r.body["items"] == [] and r.body["subtotal"] == 0
        # Deleting a line that is not there is harmless.
        assert (await customer.request("DELETE", f"/api/shop/cart/items/{mug['_id']}")).status == 200
        assert (await shop.storage.customers.get(customer.id))["cart"] == {}


@pytest.mark.gen_test
async def test_put_creates_a_line_and_carts_are_private():
    async with TestShop() as shop:
        mug = await shop.product("Mug", price=1200)
        ada = await shop.customer()
        bob = await shop.customer(email="bob@example.com")
        r = await ada.request("PUT", f"/api/shop/cart/items/{mug['_id']}", {"quantity": 5})
        assert r.body["items"][0]["quantity"] == 5
        assert (await bob.request("GET", "/api/shop/cart")).body["items"] == []


@pytest.mark.gen_test
async def test_unknown_or_inactive_products_are_refused():
    async with TestShop() as shop:
        gone = await shop.product("Retired")
        await shop.storage.products.update(gone["_id"], {"active": False})
        customer = await shop.customer()
        before = await snapshot(shop.storage)
        for product in (gone["_id"], 424242):
            r = await customer.request("POST", "/api/shop/cart/items", {"product": product, "quantity": 1})
            assert r.status == 400 and "product" in r.body["fields"]
            r = await customer.request("PUT", f"/api/shop/cart/items/{product}", {"quantity": 1})
            assert r.status == 400 and "error" in r.body
        assert await snapshot(shop.storage) == before


@pytest.mark.gen_test
async def test_a_product_retired_after_it_was_added_shows_as_unavailable():
    async with TestShop() as shop:
        mug = await shop.product("Mug", price=1200)
        pen = await shop.product("Pen", price=100)
        customer = await shop.customer(cart={mug["_id"]: 1, pen["_id"]: 2})
        await shop.storage.products.update(mug["_id"], {"active": False})
        r = await customer.request("GET", "/api/shop/cart")
        assert [i["product"] for i in r.body["items"]] == [pen["_id"]]
        assert r.body["unavailable"] == [mug["_id"]] and r.body["subtotal"] == 200
        # It can still be taken out.
        r = await customer.request("DELETE", f"/api/shop/cart/items/{mug['_id']}")
        assert "unavailable" not in r.body


@pytest.mark.gen_test
async def test_line_quantity_is_bounded():
    async with TestShop() as shop:
        mug = await shop.product("Mug")
        customer = await shop.customer()
        r = await customer.request("POST", "/api/shop/cart/items", {"product": mug["_id"], "quantity": MAX_QUANTITY_PER_LINE})
        assert r.status == 200
        before = await snapshot(shop.storage)
        r = await customer.request("POST", "/api/shop/cart/items", {"product": mug["_id"], "quantity": 1})
        assert r.status == 400 and "quantity" in r.body["fields"]
        assert await snapshot(shop.storage) == before


@pytest.mark.gen_test
async def test_cart_endpoints_refuse_bad_input_and_change_nothing():
    async with TestShop() as shop:
        mug = await shop.product("Mug")
        customer = await shop.customer(cart={mug["_id"]: 2})
        post = functools.partial(customer.request, "POST", "/api/shop/cart/items")
        await assert_refused(shop, post, MALFORMED + [
            {}, {"product": mug["_id"]}, {"quantity": 1}, {"product": mug["_id"], "quantity": 0},
            {"product": mug["_id"], "quantity": -1}, {"product": mug["_id"], "quantity": 1000},
            {"product": mug["_id"], "quantity": True}, {"product": True, "quantity": 1},
            {"product": str(mug["_id"]), "quantity": 1}, {"product": mug["_id"], "quantity": "5"},
            {"product": mug["_id"], "quantity": 1.0}, {"product": mug["_id"], "quantity": 2.5},
            {"product": mug["_id"], "quantity": 10**30}, {"product": 0, "quantity": 1},
            {"product": mug["_id"], "quantity": 1, "price": 1}, {"product": mug["_id"], "quantity": None},
        ] + [{"product": op, "quantity": 1} for op in OPERATORS]
          + [{"product": mug["_id"], "quantity": op} for op in OPERATORS])
        put = functools.partial(customer.request, "PUT", f"/api/shop/cart/items/{mug['_id']}")
        await assert_refused(shop, put, MALFORMED + [
            {}, {"quantity": -1}, {"quantity": 1000}, {"quantity": True}, {"quantity": "3"},
            {"quantity": 3, "product": mug["_id"]},
        ] + [{"quantity": op} for op in OPERATORS])
        for bad in ("abc", "0", "-1", "1.5", "%24gt", "99999999999999999999"):
            path_put = functools.partial(customer.request, "PUT", f"/api/shop/cart/items/{bad}")
            await assert_refused(shop, path_put, [{"quantity": 1}])
            path_delete = functools.partial(customer.request, "DELETE", f"/api/shop/cart/items/{bad}")
            await assert_refused(shop, path_delete, [None])
        assert (await shop.storage.customers.get(customer.id))["cart"] == {str(mug["_id"]): 2}


@pytest.mark.gen_test
async def test_cart_endpoints_need_a_customer_token():
    async with TestShop() as shop:
        mug = await shop.product("Mug")
        await shop.customer()
        before = await snapshot(shop.storage)
        for token in (None, "wrong", TestShop.ADMIN_TOKEN):
            for method, path, body in (("GET", "/api/shop/cart", None),
                                       ("POST", "/api/shop/cart/items", {"product": mug["_id"], "quantity": 1}),
                                       ("PUT", f"/api/shop/cart/items/{mug['_id']}", {"quantity": 1}),
                                       ("DELETE", f"/api/shop/cart/items/{mug['_id']}", None)):
                r = await shop.request(method, path, body, token=token)
                assert r.status == 401 and "error" in r.body, (method, path, token)
        assert await snapshot(shop.storage) == before
