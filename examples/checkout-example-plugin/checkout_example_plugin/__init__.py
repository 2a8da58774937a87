"""An example checkout-server plugin: shipping priced by the destination country, and
payment by invoice (a direct payment: the order is settled when it is placed)."""

from marshmallow import Schema, fields, validate

from checkout_server.plugin import (
    Address,
    Cart,
    OrderInfo,
    PaymentProvider,
    PaymentStart,
    PaymentUrls,
    ShippingProvider,
    Support,
    hookimpl,
)


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


class InvoiceSettings(Schema):
    # The most one invoice may be for, in minor units.
    credit_limit = fields.Integer(strict=True, required=True, validate=validate.Range(min=1))


class Invoice(PaymentProvider):
    """Pay by invoice: the order is settled when placed and billed to the customer later."""

    name = "invoice"
    flow = "direct"
    settings_schema = InvoiceSettings

    def supports(self, cart: Cart) -> Support:
        # cart.total is what the invoice bills: the goods, plus shipping at checkout.
        if cart.total > self.settings["credit_limit"]:
            return Support.no(f"pay by invoice is for orders up to "
                              f"{self.settings['credit_limit']} {cart.currency} (minor units)")
        return Support.yes()

    async def start(self, order: OrderInfo, urls: PaymentUrls) -> PaymentStart:
        # No gateway to wait for: the shop trusts the customer, so the order is settled now.
        return PaymentStart(settled=True, reference=f"invoice-{order.order_key}")


@hookimpl
def register_shipping_providers(register):
    register(CountryRate)


@hookimpl
def register_payment_providers(register):
    register(Invoice)
