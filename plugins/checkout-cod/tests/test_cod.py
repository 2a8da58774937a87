import dataclasses

import checkout_cod
import pytest
from marshmallow import ValidationError

from checkout_server.plugin import MAX_MONEY, OrderInfo, PaymentUrls
from checkout_server.testing import (
    ConfigError,
    CourierPlugin,
    TestShop,
    check_payment_provider,
    make_cart,
)

COD = {"id": 1, "provider": "cash_on_delivery", "title": "Pay on delivery"}


@pytest.mark.parametrize("settings", [{}, {"max_total": 5_000_000}])
def test_keeps_the_payment_provider_contract(settings):
    provider = check_payment_provider(checkout_cod.CashOnDelivery, settings)
    assert provider.flow == "direct"


def test_refuses_digital_goods_with_a_reason():
    provider = check_payment_provider(checkout_cod.CashOnDelivery, {})
    answer = provider.supports(make_cart({"price": 500}, {"price": 900, "digital": True}))
    assert not answer and "digital" in answer.reason
    assert provider.supports(make_cart({"price": 500}))


def test_max_total_is_inclusive_and_optional():
    provider = check_payment_provider(checkout_cod.CashOnDelivery, {"max_total": 2000})
    assert provider.supports(make_cart({"price": 1000, "quantity": 2}))
    too_much = provider.supports(make_cart({"price": 1000, "quantity": 3}))
    assert not too_much and "2000" in too_much.reason
    unlimited = check_payment_provider(checkout_cod.CashOnDelivery, {})
    assert unlimited.supports(make_cart({"price": 10**9, "quantity": 9}))


@pytest.mark.parametrize("settings", [{"max_total": "lots"}, {"max_total": 1.5}, {"max_total": 0},
                                      {"max_total": True}, {"limit": 5}, {"max_total": MAX_MONEY + 1}])
def test_bad_settings_are_refused(settings):
    with pytest.raises(ValidationError):
        checkout_cod.CashOnDeliverySettings().load(settings)


@pytest.mark.gen_test
async def test_start_settles_at_once_without_a_redirect():
    provider = check_payment_provider(checkout_cod.CashOnDelivery, {})
    order = OrderInfo(order_key="ORD-2026-000001", total=1490, currency="EUR", customer_id=1,
                      email=None, phone=None, name="Ada Lovelace", description="1 item")
    start = await provider.start(order, PaymentUrls("http://127.0.0.1/r", "http://127.0.0.1/n"))
    assert start.settled is True and start.redirect_url is None


@pytest.mark.gen_test
async def test_offered_to_physical_carts_only_in_the_shop():
    async with TestShop(config={"payment_methods": [COD]}, plugins=[checkout_cod]) as shop:
        book = await shop.product("Book", price=1200)
        ebook = await shop.product("E-book", price=800, digital=True, weight=0)
        paper = await shop.customer(cart={book["_id"]: 1})
        digital = await shop.customer(cart={ebook["_id"]: 1})
        r = await paper.request("GET", f"/api/shop/checkout/methods?address={paper.address_id}")
        assert r.status == 200
        assert r.body["payment_methods"] == [{"id": 1, "title": "Pay on delivery", "flow": "direct"}]
        r = await digital.request(
            "GET", f"/api/shop/checkout/methods?address={digital.address_id}&include_unavailable=1")
        [cod] = r.body["payment_methods"]
        assert cod["available"] is False and "digital" in cod["reason"]


@pytest.mark.gen_test
async def test_a_bad_max_total_stops_start_up_naming_method_and_field():
    config = {"payment_methods": [{**COD, "id": 7, "settings": {"max_total": "lots"}}]}
    with pytest.raises(ConfigError) as error:
        async with TestShop(config=config, plugins=[checkout_cod]):
            pass
    assert "payment method 7" in str(error.value) and "settings.max_total" in str(error.value)


def test_max_total_counts_the_shipping_the_courier_collects_too():
    provider = check_payment_provider(checkout_cod.CashOnDelivery, {"max_total": 5000})
    goods = make_cart({"price": 4900})
    assert provider.supports(goods)  # the methods list: the goods alone
    assert provider.supports(dataclasses.replace(goods, shipping_cost=100))  # 5000: inclusive
    too_much = provider.supports(dataclasses.replace(goods, shipping_cost=490))
    assert not too_much and "5000" in too_much.reason


@pytest.mark.gen_test
async def test_the_checkout_refuses_a_total_above_max_total_with_shipping():
    config = {"payment_methods": [{**COD, "settings": {"max_total": 5000}}],
              "shipping_methods": [{"id": 1, "provider": "test_courier", "title": "Courier",
                                    "settings": {"cost": 490}}]}
    async with TestShop(config=config, plugins=[checkout_cod, CourierPlugin]) as shop:
        book = await shop.product("Book", price=4900, stock=5)
        c = await shop.customer(cart={book["_id"]: 1})
        # Listed for the goods (4900); the checkout asks again with shipping (5390).
        r = await c.request("GET", f"/api/shop/checkout/methods?address={c.address_id}")
        assert [m["id"] for m in r.body["payment_methods"]] == [1]
        r = await c.checkout(1, 1)
        assert r.status == 400 and list(r.body["fields"]) == ["payment_method"]
        assert "up to 5000" in r.body["fields"]["payment_method"][0]
        assert await shop.storage.orders.count({}) == 0
        assert (await shop.storage.products.get(book["_id"]))["stock"] == 5
        # Within the limit with shipping: the order's total is what the courier collects.
        cheap = await shop.product("Pamphlet", price=4510, stock=5)
        d = await shop.customer(cart={cheap["_id"]: 1})
        r = await d.checkout(1, 1)
        assert r.status == 200, r
        assert (await shop.storage.orders.get(r.body["order_key"]))["total"] == 5000
