"""Cash on delivery: a direct payment settled when the order is placed, paid at the door."""

from marshmallow import Schema, fields, validate

from checkout_server.plugin import (
    MAX_MONEY,
    Cart,
    PaymentProvider,
    PaymentStart,
    Support,
    hookimpl,
)


class CashOnDeliverySettings(Schema):
    # Couriers carry limited cash: above this total (minor units, goods plus shipping: what
    # the courier collects) the method is not offered.
    max_total = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_MONEY),
                               load_default=None)


class CashOnDelivery(PaymentProvider):
    name = "cash_on_delivery"
    flow = "direct"
    settings_schema = CashOnDeliverySettings

    def supports(self, cart: Cart) -> Support:
        if cart.has_digital:
            return Support.no("cash on delivery is not available for digital goods")
        max_total = self.settings.get("max_total")
        # `cart.total` includes shipping at checkout; the methods list asks with the goods only.
        if max_total is not None and cart.total > max_total:
            return Support.no(f"cash on delivery is only available up to {max_total} "
                              f"{cart.currency} (minor units)")
        return Support.yes()

    async def start(self, order, urls) -> PaymentStart:
        # Nothing to ask a gateway: the courier collects the money.
        return PaymentStart(settled=True, reference=f"cod-{order.order_key}")


@hookimpl
def register_payment_providers(register):
    register(CashOnDelivery)
