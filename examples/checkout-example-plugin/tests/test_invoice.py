import dataclasses

import checkout_example_plugin
import pytest
from marshmallow import ValidationError

from checkout_server.testing import (
    TestShop,
    check_payment_provider,
    make_cart,
    make_order,
    make_urls,
)

INVOICE = {"credit_limit": 5000}


def test_keeps_the_payment_provider_contract():
    provider = check_payment_provider(checkout_example_plugin.Invoice, INVOICE)
    assert provider.flow == "direct"


def test_the_credit_limit_counts_shipping_too():
    provider = check_payment_provider(checkout_example_plugin.Invoice, INVOICE)
    goods = make_cart({"price": 4500})
    assert provider.supports(goods)  # the methods list asks with the goods alone
    assert provider.supports(dataclasses.replace(goods, shipping_cost=500))  # 5000: inclusive
    refused = provider.supports(dataclasses.replace(goods, shipping_cost=690))
    assert not refused and "5000" in refused.reason


@pytest.mark.gen_test
async def test_start_settles_at_once():
    provider = check_payment_provider(checkout_example_plugin.Invoice, INVOICE)
    start = await provider.start(make_order("ORD-2026-000007"), make_urls(1, "ORD-2026-000007"))
    assert start.settled is True and start.redirect_url is None
    assert start.reference == "invoice-ORD-2026-000007"


@pytest.mark.parametrize("settings", [{}, {"credit_limit": 0}, {"credit_limit": "5000"}])
def test_bad_settings_are_refused(settings):
    with pytest.raises(ValidationError):
        checkout_example_plugin.InvoiceSettings().load(settings)


@pytest.mark.gen_test
async def test_an_invoice_order_is_placed_and_settled():
    config = {
        "payment_methods": [
            {"id": 1, "provider": "invoice", "title": "Pay by invoice", "settings": INVOICE},
        ],
        "shipping_methods": [
            {"id": 1, "provider": "country_rate", "title": "Tracked parcel",
             "settings": {"rates": {"GB": 450}}},
        ],
    }
    async with TestShop(config=config, plugins=[checkout_example_plugin]) as shop:
        product = await shop.product("Teapot", price=2500, weight=800)
        customer = await shop.customer(cart={product["_id"]: 1})  # address in GB
        r = await customer.checkout(payment_method=1, shipping_method=1)
        assert r.status == 200, r
        order_key = r.body["order_key"]
        r = await customer.request("GET", f"/api/shop/orders/{order_key}")
        assert r.body["status"] == "PROCESSING" and r.body["total"] == 2500 + 450

        # Over the credit limit once shipping is added: refused at checkout, nothing ordered.
        pricey = await shop.product("Samovar", price=4800)
        other = await shop.customer(cart={pricey["_id"]: 1})
        r = await other.checkout(payment_method=1, shipping_method=1)
        assert r.status == 400 and "up to 5000" in r.body["fields"]["payment_method"][0]
