"""An example checkout-server plugin: shipping priced by the destination country."""

from marshmallow import Schema, fields, validate

from checkout_server.hookspecs import hookimpl
from checkout_server.providers import Address, Cart, ShippingProvider, Support


class CountryRateSettings(Schema):
    # {"GB": 450, "DE": 690}: cost in minor units per ISO 3166 alpha-2 country code.
    rates = fields.Dict(
        keys=fields.String(validate=validate.Regexp(r"^[A-Z]{2}$")),
        values=fields.Integer(strict=True, validate=validate.Range(min=0)),
        required=True,
        validate=validate.Length(min=1),
    )


class CountryRate(ShippingProvider):
    """Ships to the countries in its rate table, at that country's cost."""

    name = "country_rate"
    settings_schema = CountryRateSettings

    def supports(self, cart: Cart, address: Address) -> Support:
        if cart.all_digital:
            return Support.no("nothing to ship: the cart holds only digital goods")
        if address.country.upper() not in self.settings["rates"]:
            return Support.no(f"we do not ship to {address.country} with this method")
        return Support.yes()

    def quote(self, cart: Cart, address: Address) -> int:
        return self.settings["rates"][address.country.upper()]


@hookimpl
def register_shipping_providers(register):
    register(CountryRate)
