"""GET /api/shop/products: the products a shopper can buy, a page at a time."""

import pytest

from checkout_server.testing import TestShop


@pytest.mark.gen_test
async def test_products_for_sale_with_a_stock_state_and_the_currency():
    async with TestShop({"site": {"currency": "USD"}}) as shop:
        mug = await shop.product("Mug", price=1200, stock=40)
        few = await shop.product("Rare tea", price=3000, stock=5)
        gone = await shop.product("Sold out", price=500, stock=0)
        ebook = await shop.product("E-book", price=900, stock=100, digital=True)
        hidden = await shop.product("Retired", price=100, stock=3)
        await shop.admin("PATCH", f"/api/admin/products/{hidden['_id']}", {"active": False})
        customer = await shop.customer()
        r = await customer.request("GET", "/api/shop/products")
        assert r.status == 200
        assert r.body == {"currency": "USD", "products": [
            {"id": mug["_id"], "name": "Mug", "price": 1200, "digital": False, "stock_state": "in_stock"},
            {"id": few["_id"], "name": "Rare tea", "price": 3000, "digital": False, "stock_state": "low_stock"},
            {"id": gone["_id"], "name": "Sold out", "price": 500, "digital": False, "stock_state": "out_of_stock"},
            {"id": ebook["_id"], "name": "E-book", "price": 900, "digital": True, "stock_state": "in_stock"},
        ]}


@pytest.mark.gen_test
async def test_pages_follow_the_last_id():
    async with TestShop() as shop:
        ids = [(await shop.product(f"P{n}"))["_id"] for n in range(5)]
        customer = await shop.customer()
        first = (await customer.request("GET", "/api/shop/products?limit=2")).body["products"]
        assert [p["id"] for p in first] == ids[:2]
        rest = (await customer.request("GET", f"/api/shop/products?limit=2&after={ids[1]}")).body["products"]
        assert [p["id"] for p in rest] == ids[2:4]
        last = (await customer.request("GET", f"/api/shop/products?limit=2&after={ids[3]}")).body["products"]
        assert [p["id"] for p in last] == ids[4:]  # a shorter page is the last


@pytest.mark.gen_test
@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "after=-1", "limit=1&limit=2",
                                   "after=1e3", "limit=%24gt"])
async def test_bad_paging_is_a_400_naming_the_parameter(query):
    async with TestShop() as shop:
        customer = await shop.customer()
        r = await customer.request("GET", f"/api/shop/products?{query}")
        name = query.split("=")[0]
        assert r.status == 400 and list(r.body["fields"]) == [name] and name in r.body["error"]


@pytest.mark.gen_test
async def test_the_catalog_needs_a_customer_token():
    async with TestShop() as shop:
        await shop.product()
        assert (await shop.request("GET", "/api/shop/products")).status == 401
        assert (await shop.request("GET", "/api/shop/products", token="nope")).status == 401
