"""End to end: checkout, return, webhooks and hold expiry through the real app and the fake Stripe.

Every fault ends with a clear answer (503 at checkout, 302 with the result on return, 400 on a
bad notification) and with stock, order and cart consistent.
"""

import asyncio
import contextlib
import socket
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import checkout_stripe
import pytest
from checkout_stripe.fake import make_app, signed_event

from checkout_server.fakegateway import Faults, run_fake, shopper_choice
from checkout_server.hookspecs import hookimpl
from checkout_server.providers import ShippingProvider
from checkout_server.sweeper import sweep
from checkout_server.testing import TestShop

STRIPE, SHIPPING = 3, 1
SECRET = "whsec_e2e"
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
        "site": {"currency": "EUR", "return_url": RETURN_URL, "base_url": "http://api.shop.test"},
        "payment_methods": [{"id": STRIPE, "provider": "stripe", "title": "Card (Stripe)", "settings": {
            "secret_key": "sk_test_e2e", "sandbox": True, "webhook_secret": SECRET,
            "base_url": base_url, "timeout": 0.5, **settings}}],
        "shipping_methods": [{"id": SHIPPING, "provider": "e2e_courier", "title": "Courier"}],
    }


@contextlib.asynccontextmanager
async def stripe_shop(base_url: str | None = None):
    async with run_fake(make_app) as fake, TestShop(
            config=config(base_url or fake.base_url), plugins=[checkout_stripe, CourierPlugin]) as shop:
        product = await shop.product(price=2_000, stock=5)
        customer = await shop.customer(cart={product["_id"]: 2})
        yield shop, fake, customer, product["_id"]


async def back_to_shop(shop, location: str):
    """The browser following the gateway's redirect to the shop's return URL."""
    parts = urlsplit(location)
    assert parts.path.startswith(f"/api/shop/checkout/return/{STRIPE}")
    return await shop.request("GET", f"{parts.path}?{parts.query}")


async def state(shop, customer, product_id, order_key=None) -> dict:
    order = await shop.storage.orders.get(order_key) if order_key else None
    return {"stock": (await shop.storage.products.get(product_id))["stock"],
            "cart": (await shop.storage.customers.get(customer.id))["cart"],
            "status": order and order["status"],
            "history": order and [h["status"] for h in order["history"]]}




@pytest.mark.gen_test(timeout=30)
async def test_paid_checkout_settles_once_and_a_replayed_return_changes_nothing():
    async with stripe_shop() as (shop, fake, customer, pid):
        r = await customer.checkout(STRIPE, SHIPPING)
        assert r.status == 200 and r.body["next_step"].startswith(f"{fake.base_url}/c/pay/cs_test_")
        (session,) = fake.state.records.values()
        assert (session["amount_total"], session["currency"]) == (4_500, "eur")
        key = session["client_reference_id"]

        back = await shopper_choice(r.body["next_step"], "approve")
        r = await back_to_shop(shop, back)
        assert r.status == 302 and r.headers["Location"] == f"http://shop.test/orders/{key}?payment=paid"
        assert await state(shop, customer, pid, key) == {
            "stock": 3, "cart": {}, "status": "PROCESSING", "history": ["HOLD", "PROCESSING"]}
        retrieves = fake.state.count("retrieve")
        r = await back_to_shop(shop, back)
        assert r.headers["Location"].endswith("payment=paid") and fake.state.count("retrieve") == retrieves
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
    async with stripe_shop(closed) as (shop, fake, customer, pid):
        if faults != "refused":
            fake.state.faults = faults
        r = await customer.checkout(STRIPE, SHIPPING)
        assert r.status == 503 and "payment service" in r.body["error"]
        assert await state(shop, customer, pid) == {"stock": 5, "cart": {str(pid): 2}, "status": None,
                                                    "history": None}
        assert not await shop.storage.orders.find({"status": {"$in": ["HOLD", "PROCESSING"]}})


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("faults, choice", [
    (Faults(amount_delta=-1_000), "approve"),  # amount mismatch
    (Faults(currency="usd"), "approve"),  # currency mismatch
    (Faults(), "decline"),  # card declined, shopper gives up
    (Faults(), "cancel"),  # shopper cancels
], ids=["amount", "currency", "declined", "cancelled"])
async def test_unpaid_or_mismatched_payments_cancel_the_order_and_give_everything_back(faults, choice):
    async with stripe_shop() as (shop, fake, customer, pid):
        fake.state.faults = faults
        r = await customer.checkout(STRIPE, SHIPPING)
        (session,) = fake.state.records.values()
        key = session["client_reference_id"]
        r = await back_to_shop(shop, await shopper_choice(r.body["next_step"], choice))
        assert r.status == 302 and r.headers["Location"] == f"http://shop.test/orders/{key}?payment=failed"
        assert await state(shop, customer, pid, key) == {
            "stock": 5, "cart": {str(pid): 2}, "status": "CANCELLED", "history": ["HOLD", "CANCELLED"]}


@pytest.mark.gen_test(timeout=30)
async def test_a_gateway_fault_on_return_leaves_the_order_on_hold_until_it_can_be_verified():
    async with stripe_shop() as (shop, fake, customer, pid):
        r = await customer.checkout(STRIPE, SHIPPING)
        back = await shopper_choice(r.body["next_step"], "approve")
        key = next(iter(fake.state.records.values()))["client_reference_id"]
        fake.state.faults = Faults(status=503, only={"retrieve"})
        r = await back_to_shop(shop, back)
        assert r.status == 302 and r.headers["Location"].endswith("payment=pending")
        assert await state(shop, customer, pid, key) == {
            "stock": 3, "cart": {str(pid): 2}, "status": "HOLD", "history": ["HOLD"]}
        fake.state.faults = Faults()
        r = await back_to_shop(shop, back)
        assert r.headers["Location"].endswith("payment=paid")


@pytest.mark.gen_test(timeout=30)
async def test_forged_or_stale_notifications_are_400_and_change_nothing():
    async with stripe_shop() as (shop, fake, customer, pid):
        r = await customer.checkout(STRIPE, SHIPPING)
        await shopper_choice(r.body["next_step"], "approve")
        (session,) = fake.state.records.values()
        path = f"/api/shop/checkout/notify/{STRIPE}"
        headers, body = signed_event(fake.app, session["id"], "checkout.session.completed", SECRET)
        forged = signed_event(fake.app, session["id"], "checkout.session.completed", "whsec_attacker")
        stale = signed_event(fake.app, session["id"], "checkout.session.completed", SECRET,
                             timestamp=int(time.time()) - 600)
        tampered = (headers, body.replace(b'"payment_status": "paid"', b'"payment_status": "unpaid"'))
        for bad_headers, bad_body in (forged, stale, tampered, ({}, body)):
            r = await shop.request("POST", path, raw_body=bad_body, headers=bad_headers)
            assert r.status == 400 and "notification refused" in r.body["error"]
        key = session["client_reference_id"]
        assert (await state(shop, customer, pid, key))["status"] == "HOLD"
        # The genuine one settles the order, and its replay is recognised.
        r = await shop.request("POST", path, raw_body=body, headers=headers)
        assert r.status == 200 and r.body["result"] == "paid"
        r = await shop.request("POST", path, raw_body=body, headers=headers)
        assert r.status == 200 and r.body["status"] == "duplicate"
        assert await state(shop, customer, pid, key) == {
            "stock": 3, "cart": {}, "status": "PROCESSING", "history": ["HOLD", "PROCESSING"]}


@pytest.mark.gen_test(timeout=30)
async def test_return_and_notification_racing_settle_the_order_once():
    async with stripe_shop() as (shop, fake, customer, pid):
        r = await customer.checkout(STRIPE, SHIPPING)
        back = await shopper_choice(r.body["next_step"], "approve")
        (session,) = fake.state.records.values()
        headers, body = signed_event(fake.app, session["id"], "checkout.session.completed", SECRET)
        notify = f"/api/shop/checkout/notify/{STRIPE}"
        answers = await asyncio.gather(
            back_to_shop(shop, back), back_to_shop(shop, back),
            shop.request("POST", notify, raw_body=body, headers=headers),
            shop.request("POST", notify, raw_body=body, headers=headers))
        assert [a.status for a in answers] == [302, 302, 200, 200]
        assert all(a.headers["Location"].endswith("payment=paid") for a in answers[:2])
        assert await state(shop, customer, pid, session["client_reference_id"]) == {
            "stock": 3, "cart": {}, "status": "PROCESSING", "history": ["HOLD", "PROCESSING"]}


@pytest.mark.gen_test(timeout=30)
async def test_hold_expiry_asks_stripe_first():
    async with stripe_shop() as (shop, fake, customer, pid):
        later = datetime.now(UTC) + timedelta(hours=1)
        r = await customer.checkout(STRIPE, SHIPPING)
        abandoned = next(iter(fake.state.records.values()))
        # Paid on Stripe, browser closed before coming back.
        await shop.storage.customers.add_to_cart(customer.id, pid, 1)
        r = await customer.checkout(STRIPE, SHIPPING)
        paid = next(s for s in fake.state.records.values() if s is not abandoned)
        await shopper_choice(r.body["next_step"], "approve")
        report = await sweep(shop.storage, shop.methods, now=later)
        assert report.cancelled == [abandoned["client_reference_id"]]
        assert report.paid == [paid["client_reference_id"]]
        assert abandoned["status"] == "expired"  # the shopper can no longer pay a cancelled order
        assert (await shop.storage.products.get(pid))["stock"] == 2
