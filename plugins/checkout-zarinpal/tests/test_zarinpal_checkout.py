"""End to end: checkout, return, webhooks and hold expiry through the real app and the fake Zarinpal.

Zarinpal sends no webhooks: returns and the hold-expiry sweep are the ways an order settles.
Every fault ends with a clear answer (503 at checkout, 302 with the result on return, 400 on a
notification) and with stock, order and cart consistent.
"""

import asyncio
import contextlib
import socket
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import checkout_zarinpal
import pytest
from checkout_zarinpal.fake import make_app

from checkout_server.fakegateway import Faults, run_fake, shopper_choice
from checkout_server.hookspecs import hookimpl
from checkout_server.providers import ShippingProvider
from checkout_server.sweeper import sweep
from checkout_server.testing import TestShop

ZARINPAL, SHIPPING = 7, 1
RETURN_URL = "http://shop.test/orders/{order_key}?payment={result}"


class Courier(ShippingProvider):
    name = "e2e_courier"

    def quote(self, cart, address):
        return 500


class CourierPlugin:
    @hookimpl
    def register_shipping_providers(register):
        register(Courier)


def config(base_url: str, **settings) -> dict:
    return {
        "site": {"currency": "IRR", "return_url": RETURN_URL, "base_url": "http://api.shop.test"},
        "payment_methods": [{"id": ZARINPAL, "provider": "zarinpal", "title": "Zarinpal", "settings": {
            "merchant_id": "1344b5d4-0048-11e8-94db-005056a205be", "base_url": base_url,
            "timeout": 0.5, **settings}}],
        "shipping_methods": [{"id": SHIPPING, "provider": "e2e_courier", "title": "Courier"}],
    }


@contextlib.asynccontextmanager
async def zarinpal_shop(base_url: str | None = None):
    async with run_fake(make_app) as fake, TestShop(
            config=config(base_url or fake.base_url), plugins=[checkout_zarinpal, CourierPlugin]) as shop:
        product = await shop.product(price=50_000, stock=5)
        customer = await shop.customer(cart={product["_id"]: 2})
        yield shop, fake, customer, product["_id"]


async def back_to_shop(shop, location: str):
    """The browser following the gateway's redirect to the shop's return URL."""
    parts = urlsplit(location)
    assert parts.path.startswith(f"/api/shop/checkout/return/{ZARINPAL}")
    return await shop.request("GET", f"{parts.path}?{parts.query}")


def payments(fake) -> list[tuple[str, str]]:
    """(authority, our order key) of each payment the fake holds, oldest first."""
    return [(authority, record["callback_url"].rsplit("=", 1)[1])
            for authority, record in fake.state.records.items()]


async def state(shop, customer, product_id, order_key=None) -> dict:
    order = await shop.storage.orders.get(order_key) if order_key else None
    return {"stock": (await shop.storage.products.get(product_id))["stock"],
            "cart": (await shop.storage.customers.get(customer.id))["cart"],
            "status": order and order["status"],
            "history": order and [h["status"] for h in order["history"]]}




@pytest.mark.gen_test(timeout=30)
async def test_paid_checkout_settles_once_and_a_replayed_return_changes_nothing():
    async with zarinpal_shop() as (shop, fake, customer, pid):
        r = await customer.checkout(ZARINPAL, SHIPPING)
        assert r.status == 200 and r.body["next_step"].startswith(f"{fake.base_url}/pg/StartPay/A")
        ((authority, key),) = payments(fake)
        assert fake.state.records[authority]["requested"] == (100_500, "IRR")

        back = await shopper_choice(r.body["next_step"], "approve")
        r = await back_to_shop(shop, back)
        assert r.status == 302 and r.headers["Location"] == f"http://shop.test/orders/{key}?payment=paid"
        assert await state(shop, customer, pid, key) == {
            "stock": 3, "cart": {}, "status": "PROCESSING", "history": ["HOLD", "PROCESSING"]}
        r = await back_to_shop(shop, back)
        assert r.headers["Location"].endswith("payment=paid") and fake.state.count("verify") == 1
        assert (await state(shop, customer, pid, key))["history"] == ["HOLD", "PROCESSING"]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("faults", [Faults(delay=2), Faults(status=500), Faults(malformed=True), "refused"],
                         ids=["timeout", "5xx", "malformed", "refused"])
async def test_a_failing_gateway_at_checkout_is_a_503_that_loses_nothing(faults):
    closed = None
    if faults == "refused":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with zarinpal_shop(closed) as (shop, fake, customer, pid):
        if faults != "refused":
            fake.state.faults = faults
        r = await customer.checkout(ZARINPAL, SHIPPING)
        assert r.status == 503 and "payment service" in r.body["error"]
        assert await state(shop, customer, pid) == {"stock": 5, "cart": {str(pid): 2}, "status": None,
                                                    "history": None}
        assert not await shop.storage.orders.find({"status": {"$in": ["HOLD", "PROCESSING"]}})


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("faults, choice", [
    (Faults(amount_delta=-10_000), "approve"),  # amount mismatch: Zarinpal answers -50
    (Faults(currency="IRT"), "approve"),  # currency mismatch: Zarinpal answers -50
    (Faults(), "decline"),
    (Faults(), "cancel"),
], ids=["amount", "currency", "declined", "cancelled"])
async def test_unpaid_or_mismatched_payments_cancel_the_order_and_give_everything_back(faults, choice):
    async with zarinpal_shop() as (shop, fake, customer, pid):
        fake.state.faults = faults
        r = await customer.checkout(ZARINPAL, SHIPPING)
        ((_, key),) = payments(fake)
        r = await back_to_shop(shop, await shopper_choice(r.body["next_step"], choice))
        assert r.status == 302 and r.headers["Location"] == f"http://shop.test/orders/{key}?payment=failed"
        assert await state(shop, customer, pid, key) == {
            "stock": 5, "cart": {str(pid): 2}, "status": "CANCELLED", "history": ["HOLD", "CANCELLED"]}


@pytest.mark.gen_test(timeout=30)
async def test_a_forged_ok_return_for_an_unpaid_payment_is_not_paid():
    async with zarinpal_shop() as (shop, fake, customer, pid):
        await customer.checkout(ZARINPAL, SHIPPING)
        ((authority, key),) = payments(fake)
        r = await shop.request("GET", f"/api/shop/checkout/return/{ZARINPAL}?order={key}"
                                      f"&Authority={authority}&Status=OK")
        assert r.status == 302 and r.headers["Location"].endswith("payment=failed")
        assert (await state(shop, customer, pid, key))["status"] == "CANCELLED"


@pytest.mark.gen_test(timeout=30)
async def test_a_gateway_fault_on_return_leaves_the_order_on_hold_until_it_can_be_verified():
    async with zarinpal_shop() as (shop, fake, customer, pid):
        r = await customer.checkout(ZARINPAL, SHIPPING)
        back = await shopper_choice(r.body["next_step"], "approve")
        ((_, key),) = payments(fake)
        fake.state.faults = Faults(malformed=True, only={"verify"})
        r = await back_to_shop(shop, back)
        assert r.status == 302 and r.headers["Location"].endswith("payment=pending")
        assert await state(shop, customer, pid, key) == {
            "stock": 3, "cart": {str(pid): 2}, "status": "HOLD", "history": ["HOLD"]}
        fake.state.faults = Faults()
        r = await back_to_shop(shop, back)
        assert r.headers["Location"].endswith("payment=paid")


@pytest.mark.gen_test(timeout=30)
async def test_notifications_are_refused_zarinpal_sends_none():
    async with zarinpal_shop() as (shop, fake, customer, pid):
        await customer.checkout(ZARINPAL, SHIPPING)
        ((authority, key),) = payments(fake)
        r = await shop.request("POST", f"/api/shop/checkout/notify/{ZARINPAL}",
                               body={"Authority": authority, "Status": "OK", "order": key})
        assert r.status == 400 and "notification refused" in r.body["error"]
        assert (await state(shop, customer, pid, key))["status"] == "HOLD"


@pytest.mark.gen_test(timeout=30)
async def test_returns_and_hold_expiry_racing_settle_the_order_once():
    async with zarinpal_shop() as (shop, fake, customer, pid):
        r = await customer.checkout(ZARINPAL, SHIPPING)
        back = await shopper_choice(r.body["next_step"], "approve")
        ((_, key),) = payments(fake)
        later = datetime.now(UTC) + timedelta(hours=1)
        answers = await asyncio.gather(back_to_shop(shop, back), back_to_shop(shop, back),
                                       back_to_shop(shop, back), sweep(shop.storage, shop.methods, now=later))
        assert all(a.status == 302 and a.headers["Location"].endswith("payment=paid") for a in answers[:3])
        assert await state(shop, customer, pid, key) == {
            "stock": 3, "cart": {}, "status": "PROCESSING", "history": ["HOLD", "PROCESSING"]}


@pytest.mark.gen_test(timeout=30)
async def test_hold_expiry_asks_zarinpal_first():
    async with zarinpal_shop() as (shop, fake, customer, pid):
        later = datetime.now(UTC) + timedelta(hours=1)
        await customer.checkout(ZARINPAL, SHIPPING)  # never paid
        await shop.storage.customers.add_to_cart(customer.id, pid, 1)
        r = await customer.checkout(ZARINPAL, SHIPPING)
        await shopper_choice(r.body["next_step"], "approve")  # paid, never came back
        (_, abandoned), (_, paid) = payments(fake)
        report = await sweep(shop.storage, shop.methods, now=later)
        assert report.cancelled == [abandoned] and report.paid == [paid]
        assert (await shop.storage.products.get(pid))["stock"] == 2
