"""Stripe refunds: the provider against the fake's Refunds API, and the shared refund scenarios end to end."""

import checkout_stripe
import pytest
from checkout_stripe import Stripe
from checkout_stripe.fake import (
    INTENTS,
    REFUND_SWITCHES,
    REFUNDS,
    make_app,
    settle_refund,
    signed_charge_event,
)

from checkout_server.plugin import (
    PaymentState,
    RefundRequest,
    RefundState,
    shopper_choice,
)
from checkout_server.testing import (
    admin_cancel,
    admin_refund,
    gateway_shop,
    make_order,
    paid_order,
    provider_on_fake,
    start_payment,
)

STRIPE = 3
SECRET = "whsec_e2e"
SETTINGS = {"secret_key": "sk_test_e2e", "sandbox": True, "webhook_secret": SECRET, "timeout": 0.5}


def stripe_shop():
    return gateway_shop(checkout_stripe, make_app, "stripe", SETTINGS, method_id=STRIPE)


@pytest.mark.gen_test(timeout=20)
async def test_refund_goes_to_the_payment_intent_with_a_key_per_attempt():
    async with provider_on_fake(Stripe, make_app, SETTINGS, STRIPE) as (stripe, fake):
        start, paying = await start_payment(stripe, make_order(total=4_990, attempt_id="a1"))
        await shopper_choice(start.redirect_url, "approve")
        assert (await stripe.check(paying)).state is PaymentState.PAID
        first = await stripe.refund(paying, RefundRequest(1_000, "EUR", "r1"))
        again = await stripe.refund(paying, RefundRequest(1_000, "EUR", "r1"))  # a retry of that attempt
        other = await stripe.refund(paying, RefundRequest(1_000, "EUR", "r2"))
        assert (first.state, first.amount, first.currency) == (RefundState.SUCCEEDED, 1_000, "EUR")
        assert again == first and other.reference != first.reference and len(fake.app[REFUNDS]) == 2
        (intent,) = fake.app[INTENTS].values()
        made = fake.app[REFUNDS][first.reference]
        assert made["payment_intent"] == intent["id"] and made["metadata"]["attempt_id"] == "r1"
        keys = [h["Idempotency-Key"] for op, h in fake.state.calls if op == "refund"]
        assert keys == ["checkout-server-ORD-2026-000001-a1-refund-r1"] * 2 + ["checkout-server-ORD-2026-000001-a1-refund-r2"]
        too_much = await stripe.refund(paying, RefundRequest(3_000, "EUR", "r3"))
        assert too_much.state is RefundState.FAILED and "greater than unrefunded" in too_much.detail


@pytest.mark.gen_test(timeout=30)
async def test_a_pending_refund_is_finished_by_the_sweepers_check():
    async with stripe_shop() as gw:
        key = await paid_order(gw)
        gw.fake.app[REFUND_SWITCHES].pending = True
        r = await admin_refund(gw, key, {"amount": 500})
        assert r.status == 200 and r.body["payment"]["refunds"][0]["status"] == "pending"
        assert r.body["refunds"]["pending"] == 500 and r.body["refunds"]["refunded"] == 0
        (refund_id,) = gw.fake.app[REFUNDS]
        settle_refund(gw.fake.app, refund_id)
        report = await gw.shop.sweep()
        assert report.refunds_finished == [key]
        order = await gw.shop.storage.orders.get(key)
        assert order["payment"]["refunds"][0]["status"] == "succeeded" and not order["payment"]["refund_pending"]


@pytest.mark.gen_test(timeout=30)
async def test_charge_refunded_notifications_record_refunds_once_even_ones_made_on_the_dashboard():
    async with stripe_shop() as gw:
        key = await paid_order(gw)
        r = await admin_refund(gw, key, {"amount": 500})
        assert r.status == 200
        (intent,) = gw.fake.app[INTENTS]
        # A refund made by hand on Stripe's dashboard: no attempt of ours.
        gw.fake.app[REFUNDS]["re_test_dashboard"] = {
            "id": "re_test_dashboard", "object": "refund", "amount": 700, "currency": "eur",
            "payment_intent": intent, "status": "succeeded", "metadata": {}}
        headers, body = signed_charge_event(gw.fake.app, intent, "charge.refunded", SECRET)
        for _ in range(2):
            r = await gw.notify(headers, body)
            assert r.status == 200 and r.body["order_key"] == key, r
        order = (await gw.shop.admin("GET", f"/api/admin/orders/{key}")).body
        refunds = {(e["amount"], e["status"], e["by"]) for e in order["payment"]["refunds"]}
        assert refunds == {(500, "succeeded", "admin"), (700, "succeeded", "gateway")}
        assert order["refunds"]["refunded"] == 1_200 and order["status"] == "PROCESSING"
        # A new delivery of the same news records nothing twice.
        r = await gw.notify(*signed_charge_event(gw.fake.app, intent, "charge.refunded", SECRET))
        assert r.status == 200 and len((await gw.shop.storage.orders.get(key))["payment"]["refunds"]) == 2


@pytest.mark.gen_test(timeout=30)
async def test_cancel_of_an_unpaid_hold_expires_the_session_and_of_a_paid_one_is_409():
    async with stripe_shop() as gw:
        r = await gw.checkout()
        key = await gw.last_order_key()
        r = await admin_cancel(gw, key, {"reason": "duplicate order"})
        assert r.status == 200 and r.body["status"] == "CANCELLED", r
        (session,) = gw.fake.state.records.values()
        assert session["status"] == "expired"  # the shopper can no longer pay it
        await gw.assert_cancelled(key)
        r = await gw.checkout()  # the cart is intact: the shopper checks out again
        key = await gw.last_order_key()
        await shopper_choice(r.body["next_step"], "approve")  # paid, the shopper never came back
        r = await admin_cancel(gw, key)
        assert r.status == 409 and "paid now" in r.body["error"]
        await gw.assert_paid(key)
