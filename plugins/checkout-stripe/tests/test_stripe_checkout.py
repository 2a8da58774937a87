"""End to end: checkout, return, webhooks and hold expiry through the real app and the fake Stripe.

Every fault ends with a clear answer (503 at checkout, 302 with the result on return, 400 on a
bad notification) and with stock, order and cart consistent.
"""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import checkout_stripe
import pytest
from checkout_stripe.fake import make_app, signed_event

from checkout_server.payments.sweeper import sweep
from checkout_server.plugin import (
    Faults,
    run_fake,
    shopper_choice,
    transport_faults,
)
from checkout_server.testing import assert_consistent, gateway_shop, unused_url

STRIPE = 3
SECRET = "whsec_e2e"
SETTINGS = {"secret_key": "sk_test_e2e", "sandbox": True, "webhook_secret": SECRET, "timeout": 0.5}
FAULTS = transport_faults()


def stripe_shop(gateway_url: str | None = None):
    return gateway_shop(checkout_stripe, make_app, "stripe", SETTINGS, method_id=STRIPE, gateway_url=gateway_url)


@pytest.mark.gen_test(timeout=30)
async def test_paid_checkout_settles_once_and_a_replayed_return_changes_nothing():
    async with stripe_shop() as gw:
        r = await gw.checkout()
        assert r.status == 200 and r.body["next_step"].startswith(f"{gw.fake.base_url}/c/pay/cs_test_")
        (session,) = gw.fake.state.records.values()
        assert (session["amount_total"], session["currency"]) == (4_500, "eur")
        key = session["client_reference_id"]

        assert await gw.last_order_key() == key
        back = await shopper_choice(r.body["next_step"], "approve")
        r = await gw.back_to_shop(back)
        assert r.status == 302 and r.headers["Location"] == gw.result_url(key, "paid")
        await gw.assert_paid(key)
        retrieves = gw.fake.state.count("retrieve")
        r = await gw.back_to_shop(back)
        assert r.headers["Location"].endswith("payment=paid") and gw.fake.state.count("retrieve") == retrieves
        await gw.assert_paid(key)


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("fault", [*FAULTS, "refused"])
async def test_a_failing_gateway_at_checkout_is_a_503_that_loses_nothing(fault):
    async with stripe_shop(unused_url() if fault == "refused" else None) as gw:
        if fault != "refused":
            gw.fake.state.faults = FAULTS[fault]
        await gw.assert_checkout_unavailable()


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("faults, choice", [
    (Faults(amount_delta=-1_000), "approve"),  # amount mismatch
    (Faults(currency="usd"), "approve"),  # currency mismatch
    (Faults(), "decline"),  # card declined, shopper gives up
    (Faults(), "cancel"),  # shopper cancels
], ids=["amount", "currency", "declined", "cancelled"])
async def test_unpaid_or_mismatched_payments_cancel_the_order_and_give_everything_back(faults, choice):
    async with stripe_shop() as gw:
        gw.fake.state.faults = faults
        r = await gw.checkout()
        (session,) = gw.fake.state.records.values()
        key = session["client_reference_id"]
        r = await gw.follow(r.body["next_step"], choice)
        assert r.status == 302 and r.headers["Location"] == gw.result_url(key, "failed")
        await gw.assert_cancelled(key)


@pytest.mark.gen_test(timeout=30)
async def test_a_gateway_fault_on_return_leaves_the_order_on_hold_until_it_can_be_verified():
    async with stripe_shop() as gw:
        r = await gw.checkout()
        back = await shopper_choice(r.body["next_step"], "approve")
        key = next(iter(gw.fake.state.records.values()))["client_reference_id"]
        gw.fake.state.faults = Faults(status=503, only={"retrieve"})
        r = await gw.back_to_shop(back)
        assert r.status == 302 and r.headers["Location"].endswith("payment=pending")
        await gw.assert_held(key)
        gw.fake.state.faults = Faults()
        r = await gw.back_to_shop(back)
        assert r.headers["Location"].endswith("payment=paid")
        await gw.assert_paid(key)


@pytest.mark.gen_test(timeout=30)
async def test_forged_or_stale_notifications_are_400_and_change_nothing():
    async with stripe_shop() as gw:
        r = await gw.checkout()
        await shopper_choice(r.body["next_step"], "approve")
        (session,) = gw.fake.state.records.values()
        headers, body = signed_event(gw.fake.app, session["id"], "checkout.session.completed", SECRET)
        forged = signed_event(gw.fake.app, session["id"], "checkout.session.completed", "whsec_attacker")
        stale = signed_event(gw.fake.app, session["id"], "checkout.session.completed", SECRET,
                             timestamp=int(time.time()) - 600)
        tampered = (headers, body.replace(b'"payment_status": "paid"', b'"payment_status": "unpaid"'))
        for bad_headers, bad_body in (forged, stale, tampered, ({}, body)):
            r = await gw.notify(bad_headers, bad_body)
            assert r.status == 400 and "notification refused" in r.body["error"]
        key = session["client_reference_id"]
        await gw.assert_held(key)
        # The genuine one settles the order, and its replay is recognised.
        r = await gw.notify(headers, body)
        assert r.status == 200 and r.body["result"] == "paid"
        r = await gw.notify(headers, body)
        assert r.status == 200 and r.body["status"] == "duplicate"
        await gw.assert_paid(key)


@pytest.mark.gen_test(timeout=30)
async def test_return_and_notification_racing_settle_the_order_once():
    async with stripe_shop() as gw:
        r = await gw.checkout()
        back = await shopper_choice(r.body["next_step"], "approve")
        (session,) = gw.fake.state.records.values()
        headers, body = signed_event(gw.fake.app, session["id"], "checkout.session.completed", SECRET)
        answers = await asyncio.gather(gw.back_to_shop(back), gw.back_to_shop(back),
                                       gw.notify(headers, body), gw.notify(headers, body))
        assert [a.status for a in answers] == [302, 302, 200, 200]
        assert all(a.headers["Location"].endswith("payment=paid") for a in answers[:2])
        await gw.assert_paid(session["client_reference_id"])


@pytest.mark.gen_test(timeout=30)
async def test_hold_expiry_asks_stripe_first():
    async with stripe_shop() as gw:
        later = datetime.now(UTC) + timedelta(hours=1)
        r = await gw.checkout()
        abandoned = next(iter(gw.fake.state.records.values()))
        # Paid on Stripe, browser closed before coming back.
        await gw.shop.storage.customers.add_to_cart(gw.customer.id, gw.product_id, 1)
        r = await gw.checkout()
        paid = next(s for s in gw.fake.state.records.values() if s is not abandoned)
        await shopper_choice(r.body["next_step"], "approve")
        report = await sweep(gw.shop.storage, gw.shop.methods, now=later)
        assert report.cancelled == [abandoned["client_reference_id"]]
        assert report.paid == [paid["client_reference_id"]]
        assert abandoned["status"] == "expired"  # the shopper can no longer pay a cancelled order
        for session, status in ((abandoned, "CANCELLED"), (paid, "PROCESSING")):
            await assert_consistent(gw.shop, session["client_reference_id"], customer=gw.customer,
                                    status=status, stock={gw.product_id: 2}, cart={})


@pytest.mark.gen_test(timeout=30)
async def test_a_notification_before_payment_leaves_the_shopper_free_to_pay():
    async with stripe_shop() as gw:
        r = await gw.checkout()
        (session,) = gw.fake.state.records.values()
        key = session["client_reference_id"]
        early = await gw.notify(*signed_event(gw.fake.app, session["id"], "checkout.session.completed", SECRET))
        assert early.status == 200 and early.body["result"] == "pending"
        await gw.assert_held(key)
        r = await gw.follow(r.body["next_step"], "approve")  # the session was not expired
        assert r.headers["Location"] == gw.result_url(key, "paid")
        await gw.assert_paid(key)


async def _paid_in_a_previous_life(fake) -> dict:
    """A shop whose order was paid on `fake`, then lost (database reset or restored): its session."""
    async with stripe_shop(fake.base_url) as first:
        r = await first.checkout()
        await first.follow(r.body["next_step"], "approve")
        (session,) = fake.state.records.values()
        await first.assert_paid(session["client_reference_id"])
        return session


@pytest.mark.gen_test(timeout=30)
async def test_an_order_key_used_again_after_a_database_reset_gets_a_new_session():
    # Order keys come from counters: a reset or restored database hands them out again, within
    # Stripe's 24 h idempotency window. The new order must not be handed the old, paid session.
    async with run_fake(make_app) as fake:
        old = await _paid_in_a_previous_life(fake)
        async with stripe_shop(fake.base_url) as gw:
            started = await gw.checkout()
            key = await gw.last_order_key()
            assert key == old["client_reference_id"]  # the same order key, a new order
            assert started.status == 200 and started.body["next_step"] != old["url"]
            assert len(fake.state.records) == 2
            # Back on the return URL before paying: the order is not paid.
            (session,) = [s for s in fake.state.records.values() if s is not old]
            r = await gw.back_to_shop(session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"]))
            assert r.headers["Location"] == gw.result_url(key, "pending")
            await gw.assert_held(key)
            keys = [h["Idempotency-Key"] for op, h in fake.state.calls if op == "create"]
            assert len(set(keys)) == 2 and all(k.startswith(f"checkout-server-{key}-") for k in keys)
            r = await gw.follow(started.body["next_step"], "approve")
            assert r.headers["Location"] == gw.result_url(key, "paid")
            await gw.assert_paid(key)


@pytest.mark.gen_test(timeout=30)
async def test_webhooks_about_another_session_with_the_same_order_key_are_ignored():
    async with run_fake(make_app) as fake:
        old = await _paid_in_a_previous_life(fake)
        async with stripe_shop(fake.base_url) as gw:
            r = await gw.checkout()
            key = await gw.last_order_key()
            # Stripe retries old deliveries for days: the old session, paid or expired, names our key.
            for event_type in ("checkout.session.completed", "checkout.session.async_payment_failed"):
                answer = await gw.notify(*signed_event(fake.app, old["id"], event_type, SECRET))
                assert answer.status == 200 and answer.body["status"] == "ignored", answer
                await gw.assert_held(key)
            r = await gw.follow(r.body["next_step"], "approve")  # the shopper can still pay
            assert r.headers["Location"] == gw.result_url(key, "paid")
            await gw.assert_paid(key)
