"""Answer schemas (marshmallow): what each endpoint answers, for the OpenAPI document.

The request schemas (schemas.py) check what clients send; these describe what the service
sends back. The OpenAPI document (openapi.py) is generated from both, and the schemathesis
run (tests/test_api_fuzz.py) checks every answer of a live server against it, so a change
to an answer that is not made here too fails the tests.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

__all__ = [
    "AddressAnswer", "AdminOrderAnswer", "CartAnswer", "CatalogAnswer", "CheckoutAnswer", "CheckoutMethodsAnswer",
    "CustomerCreatedAnswer", "ErrorAnswer", "HealthAnswer", "NotificationAnswer", "OrderAnswer",
    "PluginsAnswer", "ProductAnswer", "ProfileAnswer",
]

ORDER_STATUSES = ("HOLD", "PROCESSING", "CANCELLED")
PAYMENT_RESULTS = ("paid", "failed", "pending")


def _nullable_text(**kwargs):
    return fields.String(allow_none=True, **kwargs)


class ErrorAnswer(Schema):
    """Every error answer. `fields` (validation 400s): field name -> its messages."""

    error = fields.String(required=True)
    field_messages = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), data_key="fields")


class HealthAnswer(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class ProfileAnswer(Schema):
    id = fields.Integer(required=True)
    first_name = _nullable_text(required=True)
    last_name = _nullable_text(required=True)
    email = _nullable_text(required=True)
    phone = _nullable_text(required=True)
    complete = fields.Boolean(required=True)


class CustomerCreatedAnswer(ProfileAnswer):
    """The new customer's profile and its token, shown this once."""

    token = fields.String(required=True)


class AddressAnswer(Schema):
    id = fields.Integer(required=True)
    line1 = fields.String(required=True)
    line2 = fields.String(required=True)
    city = fields.String(required=True)
    postal_code = fields.String(required=True)
    country = fields.String(required=True)


class CartLineAnswer(Schema):
    product = fields.Integer(required=True)
    name = fields.String(required=True)
    quantity = fields.Integer(required=True)
    unit_price = fields.Integer(required=True)
    line_total = fields.Integer(required=True)


class CartAnswer(Schema):
    items = fields.List(fields.Nested(CartLineAnswer), required=True)
    subtotal = fields.Integer(required=True)
    currency = fields.String(required=True)
    # Products in the cart that were removed or deactivated: not priced, not orderable.
    unavailable = fields.List(fields.Integer())


class PaymentMethodOffer(Schema):
    id = fields.Integer(required=True)
    title = fields.String(required=True)
    flow = fields.String(required=True, validate=validate.OneOf(["redirect", "direct"]))
    # With include_unavailable=1 only:
    available = fields.Boolean()
    reason = fields.String()


class ShippingMethodOffer(Schema):
    id = fields.Integer(required=True)
    title = fields.String(required=True)
    cost = fields.Integer(required=True, allow_none=True)  # None: not available
    available = fields.Boolean()
    reason = fields.String()


class CheckoutMethodsAnswer(Schema):
    payment_methods = fields.List(fields.Nested(PaymentMethodOffer), required=True)
    shipping_methods = fields.List(fields.Nested(ShippingMethodOffer), required=True)
    currency = fields.String(required=True)


class CheckoutAnswer(Schema):
    """One of the two: `next_step` (redirect payments: where the shopper pays) or `order_key`."""

    next_step = fields.String()
    order_key = fields.String()


class OrderItemAnswer(CartLineAnswer):
    pass


class OrderAddressAnswer(Schema):
    name = fields.String()
    id = fields.Integer()
    line1 = fields.String()
    line2 = fields.String()
    city = fields.String()
    postal_code = fields.String()
    country = fields.String()


class BillingAnswer(Schema):
    name = fields.String()
    email = _nullable_text()
    phone = _nullable_text()
    address = fields.Nested(OrderAddressAnswer)


class HistoryEntryAnswer(Schema):
    status = fields.String(required=True, allow_none=True)
    at = fields.DateTime(required=True, allow_none=True)
    reason = fields.String(required=True, allow_none=True)


class AdminHistoryEntryAnswer(HistoryEntryAnswer):
    by = fields.String(required=True, allow_none=True, metadata={"description": "who moved the order"})


class RefundTotalsAnswer(Schema):
    captured = fields.Integer(required=True)
    refunded = fields.Integer(required=True)
    pending = fields.Integer(required=True)
    refundable = fields.Integer(required=True)
    currency = fields.String(required=True, allow_none=True)


class OrderAnswer(Schema):
    """An order as its customer sees it."""

    order_key = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(ORDER_STATUSES))
    items = fields.List(fields.Nested(OrderItemAnswer), required=True)
    subtotal = fields.Integer(required=True)
    shipping_cost = fields.Integer(required=True)
    total = fields.Integer(required=True)
    currency = fields.String(required=True)
    payment_method = fields.Integer(required=True)
    shipping_method = fields.Integer(required=True)
    address = fields.Nested(OrderAddressAnswer, required=True)
    billing = fields.Nested(BillingAnswer, required=True)
    notes = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    # While on HOLD: until when the units are held, and where to pay (redirect payments).
    hold_until = fields.DateTime(allow_none=True)
    next_step = fields.String()
    history = fields.List(fields.Nested(HistoryEntryAnswer), required=True)


class AdminOrderAnswer(OrderAnswer):
    """Everything an admin may need: the customer, the stock state and the payment record."""

    customer = fields.Integer(required=True)
    stock = fields.String(required=True, validate=validate.OneOf(["reserving", "held", "committed", "released"]))
    payment = fields.Dict(required=True)
    shipping = fields.Dict(required=True, allow_none=True)
    events = fields.List(fields.String(), required=True)
    refunds = fields.Nested(RefundTotalsAnswer, required=True)
    history = fields.List(fields.Nested(AdminHistoryEntryAnswer), required=True)


class CatalogProductAnswer(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    price = fields.Integer(required=True)
    digital = fields.Boolean(required=True)
    stock_state = fields.String(required=True, validate=validate.OneOf(["in_stock", "low_stock", "out_of_stock"]))


class CatalogAnswer(Schema):
    """A page of products for sale, by id; a shorter page is the last."""

    products = fields.List(fields.Nested(CatalogProductAnswer), required=True)
    currency = fields.String(required=True)


class ProductAnswer(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    price = fields.Integer(required=True)
    currency = fields.String(required=True)
    stock = fields.Integer(required=True)
    received = fields.Integer(required=True, metadata={"description": "units ever put into stock"})
    held = fields.Integer(required=True, metadata={"description": "units held by orders not yet released or sold"})
    digital = fields.Boolean(required=True)
    weight = fields.Integer(required=True, metadata={"description": "grams per unit"})
    active = fields.Boolean(required=True)


class PluginAnswer(Schema):
    name = fields.String(required=True)
    distribution = _nullable_text(required=True)
    version = _nullable_text(required=True)
    hooks = fields.List(fields.String(), required=True)
    payment_providers = fields.List(fields.String(), required=True)
    shipping_providers = fields.List(fields.String(), required=True)


class MethodAnswer(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(["payment", "shipping"]))
    provider = fields.String(required=True)
    title = fields.String(required=True)
    active = fields.Boolean(required=True)
    flow = fields.String(validate=validate.OneOf(["redirect", "direct"]))  # payment methods only


class PluginsAnswer(Schema):
    plugins = fields.List(fields.Nested(PluginAnswer), required=True)
    methods = fields.List(fields.Nested(MethodAnswer), required=True)
    config = _nullable_text(required=True, metadata={"description": "the config file in use"})


class NotificationAnswer(Schema):
    """A notification's fate: `ok` (settled or looked at), `duplicate`, or `ignored`."""

    status = fields.String(required=True, validate=validate.OneOf(["ok", "duplicate", "ignored"]))
    order_key = fields.String()
    result = fields.String(validate=validate.OneOf(PAYMENT_RESULTS))
