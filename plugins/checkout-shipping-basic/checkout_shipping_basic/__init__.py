"""Basic shipping providers: flat rate, free over a threshold, weight table, store pickup,
digital delivery. Costs are integers in minor units."""

import itertools

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from checkout_server.plugin import (
    MAX_MONEY,
    Address,
    Cart,
    ShippingProvider,
    Support,
    hookimpl,
)

# Above MAX_MONEY a cost would be refused at every checkout: refuse it in the config instead.
_money = {"strict": True, "validate": validate.Range(min=0, max=MAX_MONEY)}


def _needs_parcel(cart: Cart) -> Support:
    """Physical shipping needs at least one physical item."""
    if cart.all_digital:
        return Support.no("this cart holds only digital goods: nothing to ship")
    return Support.yes()


class FlatRateSettings(Schema):
    cost = fields.Integer(required=True, **_money)


class FlatRate(ShippingProvider):
    name = "flat_rate"
    settings_schema = FlatRateSettings

    def supports(self, cart: Cart, address: Address) -> Support:
        return _needs_parcel(cart)

    def quote(self, cart: Cart, address: Address) -> int:
        return self.settings["cost"]


class FreeShippingOverSettings(Schema):
    threshold = fields.Integer(required=True, **_money)
    cost = fields.Integer(required=True, **_money)


class FreeShippingOver(ShippingProvider):
    """Free from `threshold` (subtotal, minor units) up; `cost` below it."""

    name = "free_shipping_over"
    settings_schema = FreeShippingOverSettings

    def supports(self, cart: Cart, address: Address) -> Support:
        return _needs_parcel(cart)

    def quote(self, cart: Cart, address: Address) -> int:
        return 0 if cart.subtotal >= self.settings["threshold"] else self.settings["cost"]


class WeightRate(Schema):
    up_to_grams = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    cost = fields.Integer(required=True, **_money)


class WeightTableSettings(Schema):
    rates = fields.List(fields.Nested(WeightRate), required=True, validate=validate.Length(min=1))

    @validates_schema
    def _ascending(self, data, **kwargs):
        limits = [rate["up_to_grams"] for rate in data.get("rates", [])]
        if any(b <= a for a, b in itertools.pairwise(limits)):
            raise ValidationError("brackets must be in ascending order of up_to_grams", "rates")


class WeightTable(ShippingProvider):
    """The cost of the first bracket the cart's weight fits in; heavier carts are refused."""

    name = "weight_table"
    settings_schema = WeightTableSettings

    def _rate(self, cart: Cart) -> dict | None:
        weight = cart.weight
        return next((r for r in self.settings["rates"] if weight <= r["up_to_grams"]), None)

    def supports(self, cart: Cart, address: Address) -> Support:
        parcel = _needs_parcel(cart)
        if not parcel:
            return parcel
        if self._rate(cart) is None:
            heaviest = self.settings["rates"][-1]["up_to_grams"]
            return Support.no(f"the cart weighs {cart.weight} g, more than the {heaviest} g "
                              f"this method ships")
        return Support.yes()

    def quote(self, cart: Cart, address: Address) -> int:
        rate = self._rate(cart)
        if rate is None:
            raise ValueError(f"no weight bracket for {cart.weight} g")
        return rate["cost"]


class StorePickupSettings(Schema):
    cost = fields.Integer(load_default=0, **_money)


class StorePickup(ShippingProvider):
    name = "store_pickup"
    settings_schema = StorePickupSettings

    def supports(self, cart: Cart, address: Address) -> Support:
        return _needs_parcel(cart)

    def quote(self, cart: Cart, address: Address) -> int:
        return self.settings["cost"]


class DigitalDelivery(ShippingProvider):
    """Free delivery by download, for carts of digital goods only."""

    name = "digital_delivery"

    def supports(self, cart: Cart, address: Address) -> Support:
        if not cart.all_digital:
            return Support.no("only carts of digital goods can be delivered by download")
        return Support.yes()

    def quote(self, cart: Cart, address: Address) -> int:
        return 0


@hookimpl
def register_shipping_providers(register):
    for provider in (FlatRate, FreeShippingOver, WeightTable, StorePickup, DigitalDelivery):
        register(provider)
