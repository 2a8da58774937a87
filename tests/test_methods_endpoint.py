"""GET /api/shop/checkout/methods, and availability when a provider misbehaves."""

import logging

import pytest

from checkout_server.config import MethodConfig
from checkout_server.methods.availability import payment_support, shipping_offer
from checkout_server.methods.table import BoundMethod
from checkout_server.plugin.hookspecs import hookimpl
from checkout_server.plugin.providers import (
    Method,
    PaymentProvider,
    ShippingProvider,
    Support,
)
from checkout_server.testing import TestShop, make_address, make_cart


class Card(PaymentProvider):
    name = "card"
    flow = "redirect"

    def supports(self, cart):
        if cart.subtotal > 100_000:
            return Support.no("card payments are limited to 1000.00")
        return Support.yes()


class Invoice(PaymentProvider):
    name = "invoice"
    flow = "direct"


class BrokenPayment(PaymentProvider):
    name = "broken_payment"
    flow = "direct"

    def supports(self, cart):
        raise RuntimeError("plugin bug")


class Courier(ShippingProvider):
    name = "courier"

    def supports(self, cart, address):
        if address.country != "GB":
            return Support.no("the courier only delivers in GB")
        return Support.yes()

    def quote(self, cart, address):
        return 300 + cart.weight // 100


class BadQuote(ShippingProvider):
    """Quotes whatever the test puts in its `answer` setting."""

    name = "bad_quote"

    def quote(self, cart, address):
        answer = self.settings["answer"]
        if isinstance(answer, Exception):
            raise answer
        return answer


class BrokenSupports(ShippingProvider):
    name = "broken_supports"

    def supports(self, cart, address):
        return True  # not a Support

    def quote(self, cart, address):
        return 0


class ShopPlugin:
    @hookimpl
    def register_payment_providers(self, register):
        for cls in (Card, Invoice, BrokenPayment):
            register(cls)

    @hookimpl
    def register_shipping_providers(self, register):
        for cls in (Courier, BadQuote, BrokenSupports):
            register(cls)


class AnySettings:
    """A settings schema that passes the config's settings through (tests only)."""

    def load(self, data):
        return dict(data)


BadQuote.settings_schema = AnySettings  # type: ignore[assignment]

CONFIG = {
    "payment_methods": [
        {"id": 1, "provider": "card", "title": "Card"},
        {"id": 2, "provider": "invoice", "title": "Invoice", "active": False},
        {"id": 3, "provider": "broken_payment", "title": "Broken"},
    ],
    "shipping_methods": [
        {"id": 1, "provider": "courier", "title": "Courier"},
        {"id": 2, "provider": "broken_supports", "title": "Odd"},
    ],
}


async def shopper(shop, price=1000, **customer):
    product = await shop.product("Kettle", price=price, weight=1200)
    return await shop.customer(cart={product["_id"]: 2}, **customer)


def url(address, extra=""):
    return f"/api/shop/checkout/methods?address={address}{extra}"


@pytest.mark.gen_test
async def test_lists_only_active_methods_that_support_the_cart_and_address(caplog):
    async with TestShop(config=CONFIG, plugins=[ShopPlugin()]) as shop:
        customer = await shopper(shop)
        with caplog.at_level(logging.ERROR, "checkout_server.methods.availability"):
            r = await customer.request("GET", url(customer.address_id))
        assert r.status == 200, r
        assert r.body == {
            "payment_methods": [{"id": 1, "title": "Card", "flow": "redirect"}],
            "shipping_methods": [{"id": 1, "title": "Courier", "cost": 324}],
            "currency": "EUR",
        }
        # The faulty plugins are logged for the admin, not shown to the shopper.
        assert "broken_payment" in caplog.text and "broken_supports" in caplog.text


@pytest.mark.gen_test
async def test_include_unavailable_adds_the_others_with_their_reason():
    async with TestShop(config=CONFIG, plugins=[ShopPlugin()]) as shop:
        customer = await shopper(shop, price=60_000)  # 120000: over the card limit
        r = await customer.request("GET", url(customer.address_id, "&include_unavailable=1"))
        assert r.status == 200
        payment = {m["id"]: m for m in r.body["payment_methods"]}
        assert set(payment) == {1, 3}  # the inactive method stays hidden
        assert payment[1]["available"] is False and "1000.00" in payment[1]["reason"]
        assert payment[3]["available"] is False and payment[3]["reason"]
        assert "plugin bug" not in r.raw.decode()  # no internals leak to shoppers
        shipping = {m["id"]: m for m in r.body["shipping_methods"]}
        assert shipping[1] == {"id": 1, "title": "Courier", "cost": 324, "available": True}
        assert shipping[2]["available"] is False and shipping[2]["cost"] is None


@pytest.mark.gen_test
async def test_shipping_depends_on_the_address():
    async with TestShop(config=CONFIG, plugins=[ShopPlugin()]) as shop:
        customer = await shopper(shop)
        abroad = await shop.storage.customers.add_address(customer.id, {
            "line1": "1 Rue", "line2": "", "city": "Paris", "postal_code": "75001", "country": "FR"})
        r = await customer.request("GET", url(abroad["id"], "&include_unavailable=true"))
        [courier, _odd] = r.body["shipping_methods"]
        assert courier["available"] is False and "GB" in courier["reason"]


@pytest.mark.gen_test
async def test_an_empty_cart_offers_nothing():
    async with TestShop(config=CONFIG, plugins=[ShopPlugin()]) as shop:
        customer = await shop.customer()
        r = await customer.request("GET", url(customer.address_id))
        assert r.status == 200
        assert r.body["payment_methods"] == [] and r.body["shipping_methods"] == []
        r = await customer.request("GET", url(customer.address_id, "&include_unavailable=1"))
        assert all("empty" in m["reason"] for m in r.body["payment_methods"] + r.body["shipping_methods"])


@pytest.mark.gen_test
async def test_someone_elses_address_answers_as_a_missing_one():
    async with TestShop(config=CONFIG, plugins=[ShopPlugin()]) as shop:
        customer = await shopper(shop)
        other = await shopper(shop)
        mine = await customer.request("GET", url(99999))
        theirs = await customer.request("GET", url(other.address_id))
        assert mine.status == theirs.status == 404
        assert mine.body == theirs.body == {"error": "address not found"}


@pytest.mark.gen_test
@pytest.mark.parametrize("query, field", [
    ("", "address"),
    ("?address=abc", "address"),
    ("?address=-1", "address"),
    ("?address=0", "address"),
    ("?address=1&address=2", "address"),
    ("?address={a}&include_unavailable=maybe", "include_unavailable"),
])
async def test_bad_query_values_are_400_naming_the_parameter(query, field):
    async with TestShop(config=CONFIG, plugins=[ShopPlugin()]) as shop:
        customer = await shopper(shop)
        r = await customer.request("GET", "/api/shop/checkout/methods" + query.format(a=customer.address_id))
        assert r.status == 400 and field in r.body["fields"] and r.body["error"]


@pytest.mark.gen_test
async def test_needs_a_customer_token():
    async with TestShop(config=CONFIG, plugins=[ShopPlugin()]) as shop:
        r = await shop.request("GET", url(1))
        assert r.status == 401 and "error" in r.body


# -- availability.py: a provider's answer is checked, and its faults contained

def bound(cls, **settings):
    config = MethodConfig(cls.kind, 5, cls.name, "Test", True, settings)
    return BoundMethod(config, cls(Method(5, "Test", cls.kind), settings))


CART, ADDRESS = make_cart({"price": 1000}), make_address()


@pytest.mark.parametrize("answer", [-1, 4.5, "490", None, True, False, RuntimeError("boom")])
def test_a_bad_or_failing_quote_makes_the_method_unavailable(answer, caplog):
    with caplog.at_level(logging.ERROR, "checkout_server.methods.availability"):
        support, cost = shipping_offer(bound(BadQuote, answer=answer), CART, ADDRESS)
    assert not support and support.reason and cost is None
    assert "bad_quote" in caplog.text


@pytest.mark.parametrize("answer", [0, 490])
def test_a_good_quote_is_offered(answer):
    assert shipping_offer(bound(BadQuote, answer=answer), CART, ADDRESS) == (Support.yes(), answer)


def test_a_payment_provider_that_raises_is_unavailable_not_an_error(caplog):
    with caplog.at_level(logging.ERROR, "checkout_server.methods.availability"):
        support = payment_support(bound(BrokenPayment), CART)
    assert not support and support.reason
    assert "plugin bug" in caplog.text


def test_a_no_without_a_reason_gets_one():
    class Shy(PaymentProvider):
        name = "shy"
        flow = "direct"

        def supports(self, cart):
            return Support(False)

    support = payment_support(bound(Shy), CART)
    assert not support and support.reason
