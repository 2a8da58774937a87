"""Request schemas (marshmallow): what a client may send, and nothing else.

Every schema rejects unknown fields, and every field is strictly typed: `true` is not an
integer, `"5"` is not a number, `1` is not a boolean, and an object is never a string. So no
client value can reach a query as an operator (`{"$gt": ""}`) and no client key can become a
field path: keys are the schema's own names, values are plain strings, ints and bools.
"""

from __future__ import annotations

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates_schema,
)

from checkout_server.plugin.providers import MAX_MONEY

__all__ = [
    "COUNTRY_CODES",
    "AddressSchema",
    "AdminOrdersQuery",
    "CartItemSchema",
    "CartQuantitySchema",
    "CatalogQuery",
    "CheckoutMethodsQuery",
    "CheckoutSchema",
    "CustomerCreateSchema",
    "OrderCancelSchema",
    "OrderRefundSchema",
    "OrdersQuery",
    "PaymentReturnQuery",
    "ProductCreateSchema",
    "ProductPatchSchema",
    "ProfileSchema",
    "StrictBoolean",
    "StrictInteger",
    "Text",
]

# Upper bounds that keep one request from writing absurd documents.
MAX_QUANTITY_PER_LINE = 999
MAX_PRICE = MAX_MONEY  # minor units
MAX_STOCK = 10**9
MAX_WEIGHT_GRAMS = 10**7  # 10 tonnes per unit
MAX_ID = 2**53 - 1  # what every JSON client can represent exactly

# ISO 3166-1 alpha-2: the officially assigned codes.
_ASSIGNED_CODES = """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR
BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ
EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW
GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY
KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV
MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY
QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG
TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM
ZW
"""
COUNTRY_CODES = frozenset(_ASSIGNED_CODES.split())


class StrictInteger(fields.Integer):
    """A JSON integer: not a bool, not a float, not a numeric string."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        # bool is an int subclass in Python; JSON true must not pass as 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBoolean(fields.Boolean):
    """A JSON true or false, nothing that merely looks like one."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class Text(fields.String):
    """A string, stripped of surrounding whitespace, without control characters."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if any(ord(ch) < 32 and ch not in "\t\n" for ch in text):
            raise ValidationError("must not contain control characters")
        return text


def _positive_id(**kwargs) -> StrictInteger:
    return StrictInteger(validate=validate.Range(min=1, max=MAX_ID, error="must be a positive integer id"), **kwargs)


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class CheckoutSchema(StrictSchema):
    """POST /api/shop/checkout/cart, as the seed page defines it."""

    address = _positive_id(required=True)
    payment_method = _positive_id(required=True)
    shipping_method = _positive_id(required=True)
    notes = Text(load_default="", validate=validate.Length(max=500))


class ProfileSchema(StrictSchema):
    """A customer's profile; PATCH loads it with partial=True."""

    first_name = Text(required=True, validate=validate.Length(min=1, max=100))
    last_name = Text(required=True, validate=validate.Length(min=1, max=100))
    email = fields.Email(required=True, validate=validate.Length(max=254))
    phone = Text(required=True, validate=[
        validate.Length(min=3, max=32),
        validate.Regexp(r"^\+?[0-9][0-9 ()./-]*[0-9]$", error="must be a phone number"),
    ])


class CustomerCreateSchema(ProfileSchema):
    """POST /api/admin/customers: any profile field, none required."""

    def __init__(self, **kwargs):
        kwargs.setdefault("partial", True)
        super().__init__(**kwargs)


class AddressSchema(StrictSchema):
    line1 = Text(required=True, validate=validate.Length(min=1, max=200))
    line2 = Text(load_default="", validate=validate.Length(max=200))
    city = Text(required=True, validate=validate.Length(min=1, max=100))
    postal_code = Text(required=True, validate=validate.Length(min=1, max=20))
    country = Text(required=True)

    @validates_schema
    def _country_code(self, data, **kwargs):
        country = data.get("country")
        if country is not None and country.upper() not in COUNTRY_CODES:
            raise ValidationError("must be an ISO 3166-1 alpha-2 country code, e.g. DE", "country")

    def load(self, *args, **kwargs):
        data = super().load(*args, **kwargs)
        if "country" in data:
            data["country"] = data["country"].upper()
        return data


class CartItemSchema(StrictSchema):
    """POST /api/shop/cart/items: adds `quantity` to the product's line."""

    product = _positive_id(required=True)
    quantity = StrictInteger(required=True, validate=validate.Range(min=1, max=MAX_QUANTITY_PER_LINE))


class CartQuantitySchema(StrictSchema):
    """PUT /api/shop/cart/items/{product}: the line's new quantity; 0 removes it."""

    quantity = StrictInteger(required=True, validate=validate.Range(min=0, max=MAX_QUANTITY_PER_LINE))


class ProductCreateSchema(StrictSchema):
    name = Text(required=True, validate=validate.Length(min=1, max=200))
    price = StrictInteger(required=True, validate=validate.Range(min=0, max=MAX_PRICE))
    stock = StrictInteger(required=True, validate=validate.Range(min=0, max=MAX_STOCK))
    digital = StrictBoolean(load_default=False)
    weight = StrictInteger(load_default=0, validate=validate.Range(min=0, max=MAX_WEIGHT_GRAMS))
    active = StrictBoolean(load_default=True)


class ProductPatchSchema(StrictSchema):
    """PATCH /api/admin/products/{id}: any product field.

    `stock` is the new on-hand count; the service books the difference as a restock or a
    write-off (storage.products.adjust_stock), so `received` stays a true ledger.
    """

    name = Text(validate=validate.Length(min=1, max=200))
    price = StrictInteger(validate=validate.Range(min=0, max=MAX_PRICE))
    stock = StrictInteger(validate=validate.Range(min=0, max=MAX_STOCK))
    digital = StrictBoolean()
    weight = StrictInteger(validate=validate.Range(min=0, max=MAX_WEIGHT_GRAMS))
    active = StrictBoolean()


class OrderCancelSchema(StrictSchema):
    """POST /api/admin/orders/{order_key}/cancel (the body is optional)."""

    reason = Text(load_default="", validate=validate.Length(max=500))
    restock = StrictBoolean(load_default=True)  # false: the units are gone (written off)
    refund = StrictBoolean(load_default=True)  # false: cancel a paid order without refunding


class OrderRefundSchema(StrictSchema):
    """POST /api/admin/orders/{order_key}/refund."""

    amount = StrictInteger(load_default=None, validate=validate.Range(min=1, max=MAX_MONEY))  # default: all left
    manual = StrictBoolean(load_default=False)  # refunded another way: only recorded
    note = Text(load_default="", validate=validate.Length(max=500))
    reason = Text(load_default="", validate=validate.Length(max=500))

    @validates_schema
    def note_goes_with_manual(self, data, **kwargs):
        if data.get("manual") and not data.get("note"):
            raise ValidationError("say how the customer was refunded", "note")
        if data.get("note") and not data.get("manual"):
            raise ValidationError("only a manual refund takes a note (use reason)", "note")


# ---- query parameters (the handlers parse these themselves; the schemas describe them
# for the OpenAPI document, and the schemathesis run holds both to the same bounds)

ORDERS_PAGE_DEFAULT, ORDERS_PAGE_MAX, ORDERS_SKIP_MAX = 50, 100, 1_000_000


class CheckoutMethodsQuery(Schema):
    """GET /api/shop/checkout/methods"""

    address = StrictInteger(required=True, validate=validate.Range(min=1, max=MAX_ID),
                            metadata={"description": "one of the customer's address ids"})
    include_unavailable = fields.String(
        validate=validate.OneOf(["1", "0", "true", "false", "yes", "no", ""]),
        metadata={"description": "1: also list the methods this cart cannot use, with `available` and `reason`"})


class OrdersQuery(Schema):
    """GET /api/shop/orders: a page of orders, newest first; a shorter page is the last."""

    limit = StrictInteger(load_default=ORDERS_PAGE_DEFAULT, validate=validate.Range(min=1, max=ORDERS_PAGE_MAX))
    skip = StrictInteger(load_default=0, validate=validate.Range(min=0, max=ORDERS_SKIP_MAX))


class AdminOrdersQuery(Schema):
    """GET /api/admin/orders: every customer's orders, newest first, filtered."""

    status = fields.String(validate=validate.OneOf(["HOLD", "PROCESSING", "CANCELLED"]))
    customer = StrictInteger(validate=validate.Range(min=1, max=10**15 - 1))
    refund_needed = fields.String(validate=validate.OneOf(["true", "false", "1", "0"]))
    limit = StrictInteger(load_default=ORDERS_PAGE_DEFAULT, validate=validate.Range(min=1, max=ORDERS_PAGE_MAX))
    skip = StrictInteger(load_default=0, validate=validate.Range(min=0, max=ORDERS_SKIP_MAX))


class CatalogQuery(Schema):
    """GET /api/shop/products: `limit` products with ids above `after`."""

    limit = StrictInteger(load_default=ORDERS_PAGE_DEFAULT, validate=validate.Range(min=1, max=ORDERS_PAGE_MAX))
    after = StrictInteger(load_default=0, validate=validate.Range(min=0, max=10**15 - 1))


class PaymentReturnQuery(Schema):
    """GET /api/shop/checkout/return/{method}: the URL the gateway was given, plus its own parameters."""

    order = fields.String(required=True, metadata={"description": "the order key"})
    rt = fields.String(required=True, metadata={"description": "the order's return token"})
