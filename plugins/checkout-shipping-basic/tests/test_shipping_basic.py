import checkout_shipping_basic as basic
import pytest
from marshmallow import ValidationError

from checkout_server.plugin import MAX_MONEY
from checkout_server.testing import (
    TestShop,
    check_shipping_provider,
    make_address,
    make_cart,
)

ADDRESS = make_address()
PHYSICAL = make_cart({"price": 1000, "quantity": 2, "weight": 300})  # 2000, 600 g
DIGITAL = make_cart({"price": 500, "digital": True, "weight": 0})
MIXED = make_cart({"price": 500, "weight": 200}, {"price": 700, "digital": True, "weight": 0})
RATES = [{"up_to_grams": 500, "cost": 300}, {"up_to_grams": 2000, "cost": 700}]


@pytest.mark.parametrize("cls, settings", [
    (basic.FlatRate, {"cost": 490}),
    (basic.FlatRate, {"cost": 0}),
    (basic.FreeShippingOver, {"threshold": 5000, "cost": 490}),
    (basic.WeightTable, {"rates": RATES}),
    (basic.StorePickup, {}),
    (basic.StorePickup, {"cost": 150}),
    (basic.DigitalDelivery, {}),
])
def test_each_provider_keeps_the_shipping_contract(cls, settings):
    check_shipping_provider(cls, settings)


def test_flat_rate_ships_parcels_at_its_cost():
    provider = check_shipping_provider(basic.FlatRate, {"cost": 490})
    assert provider.supports(PHYSICAL, ADDRESS) and provider.quote(PHYSICAL, ADDRESS) == 490
    assert provider.supports(MIXED, ADDRESS)
    refused = provider.supports(DIGITAL, ADDRESS)
    assert not refused and "digital" in refused.reason


def test_free_shipping_from_the_threshold_up():
    provider = check_shipping_provider(basic.FreeShippingOver, {"threshold": 2000, "cost": 490})
    assert provider.quote(PHYSICAL, ADDRESS) == 0  # subtotal 2000 == threshold
    assert provider.quote(make_cart({"price": 1999}), ADDRESS) == 490


def test_weight_table_picks_the_first_bracket_that_fits_and_refuses_heavier_carts():
    provider = check_shipping_provider(basic.WeightTable, {"rates": RATES})
    assert provider.quote(make_cart({"weight": 500}), ADDRESS) == 300
    assert provider.quote(make_cart({"weight": 501}), ADDRESS) == 700
    assert provider.quote(PHYSICAL, ADDRESS) == 700
    heavy = make_cart({"weight": 1000, "quantity": 3})
    refused = provider.supports(heavy, ADDRESS)
    assert not refused and "3000 g" in refused.reason


def test_store_pickup_is_free_unless_configured():
    assert check_shipping_provider(basic.StorePickup, {}).quote(PHYSICAL, ADDRESS) == 0
    assert check_shipping_provider(basic.StorePickup, {"cost": 150}).quote(PHYSICAL, ADDRESS) == 150


def test_digital_delivery_only_for_all_digital_carts():
    provider = check_shipping_provider(basic.DigitalDelivery, {})
    assert provider.supports(DIGITAL, ADDRESS) and provider.quote(DIGITAL, ADDRESS) == 0
    for cart in (PHYSICAL, MIXED):
        refused = provider.supports(cart, ADDRESS)
        assert not refused and "digital" in refused.reason


@pytest.mark.parametrize("schema, settings, field", [
    (basic.FlatRateSettings, {}, "cost"),
    (basic.FlatRateSettings, {"cost": -1}, "cost"),
    (basic.FlatRateSettings, {"cost": "490"}, "cost"),
    (basic.FlatRateSettings, {"cost": 4.9}, "cost"),
    (basic.FreeShippingOverSettings, {"cost": 490}, "threshold"),
    (basic.WeightTableSettings, {"rates": []}, "rates"),
    (basic.WeightTableSettings, {"rates": [{"up_to_grams": 500}]}, "rates"),
    (basic.WeightTableSettings, {"rates": list(reversed(RATES))}, "rates"),
    (basic.WeightTableSettings, {"rates": [RATES[0], RATES[0]]}, "rates"),
    (basic.StorePickupSettings, {"cost": -5}, "cost"),
    # Above MAX_MONEY every checkout would refuse the quote: refused in the config instead.
    (basic.FlatRateSettings, {"cost": MAX_MONEY + 1}, "cost"),
    (basic.FreeShippingOverSettings, {"threshold": 2**63, "cost": 490}, "threshold"),
    (basic.FreeShippingOverSettings, {"threshold": 5000, "cost": 2**63}, "cost"),
    (basic.WeightTableSettings, {"rates": [{"up_to_grams": 500, "cost": 2**63}]}, "rates"),
    (basic.StorePickupSettings, {"cost": MAX_MONEY + 1}, "cost"),
    (basic.DigitalDelivery.settings_schema, {"cost": 1}, "cost"),
])
def test_bad_settings_name_the_field(schema, settings, field):
    with pytest.raises(ValidationError) as error:
        schema().load(settings)
    assert field in error.value.normalized_messages()


@pytest.mark.gen_test
async def test_the_shop_offers_the_methods_that_fit_with_their_costs():
    config = {"shipping_methods": [
        {"id": 1, "provider": "flat_rate", "title": "Standard", "settings": {"cost": 490}},
        {"id": 2, "provider": "digital_delivery", "title": "Download"},
        {"id": 3, "provider": "store_pickup", "title": "Pick up"},
        {"id": 4, "provider": "weight_table", "title": "By weight", "settings": {"rates": RATES}},
    ]}
    async with TestShop(config=config, plugins=[basic]) as shop:
        anvil = await shop.product("Anvil", price=9000, weight=40_000)
        customer = await shop.customer(cart={anvil["_id"]: 1})
        r = await customer.request("GET", f"/api/shop/checkout/methods?address={customer.address_id}")
        assert r.status == 200
        assert r.body["shipping_methods"] == [{"id": 1, "title": "Standard", "cost": 490},
                                              {"id": 3, "title": "Pick up", "cost": 0}]


@pytest.mark.gen_test
async def test_the_weight_table_weighs_only_the_physical_goods():
    config = {"shipping_methods": [
        {"id": 1, "provider": "weight_table", "title": "By weight", "settings": {"rates": RATES}},
    ]}
    async with TestShop(config=config, plugins=[basic]) as shop:
        book = await shop.product("Book", price=2000, weight=400)
        # A download with a weight left in its product record still weighs nothing.
        ebook = await shop.product("E-book", price=900, weight=5_000, digital=True)
        customer = await shop.customer(cart={book["_id"]: 1, ebook["_id"]: 1})
        r = await customer.request("GET", f"/api/shop/checkout/methods?address={customer.address_id}")
        assert r.status == 200
        assert r.body["shipping_methods"] == [{"id": 1, "title": "By weight", "cost": 300}]
