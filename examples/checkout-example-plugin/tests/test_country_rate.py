import checkout_example_plugin
import pytest
from marshmallow import ValidationError

from checkout_server.testing import (
    TestShop,
    check_shipping_provider,
    make_address,
    make_cart,
)

RATES = {"rates": {"GB": 450, "DE": 690}}


def test_keeps_the_shipping_provider_contract():
    check_shipping_provider(checkout_example_plugin.CountryRate, RATES)


def test_quotes_per_country_and_refuses_others():
    provider = check_shipping_provider(checkout_example_plugin.CountryRate, RATES)
    cart = make_cart({"price": 1000})
    assert provider.quote(cart, make_address(country="DE")) == 690
    refused = provider.supports(cart, make_address(country="FR"))
    assert not refused and "FR" in refused.reason


def test_bad_settings_are_refused():
    with pytest.raises(ValidationError):
        checkout_example_plugin.CountryRateSettings().load({"rates": {"gb": -1}})


@pytest.mark.gen_test
async def test_offered_at_checkout_once_configured():
    config = {"shipping_methods": [
        {"id": 1, "provider": "country_rate", "title": "Tracked parcel", "settings": RATES},
    ]}
    async with TestShop(config=config, plugins=[checkout_example_plugin]) as shop:
        product = await shop.product("Teapot", price=2500)
        customer = await shop.customer(cart={product["_id"]: 1})  # address in GB
        r = await customer.request(
            "GET", f"/api/shop/checkout/methods?address={customer.address_id}")
        assert r.status == 200
        assert r.body["shipping_methods"] == [{"id": 1, "title": "Tracked parcel", "cost": 450}]
