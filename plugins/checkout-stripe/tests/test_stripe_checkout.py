"""End to end: checkout, return, webhooks and hold expiry through the real app and the fake Stripe.

Every fault ends with a clear answer (503 at checkout, 302 with the result on return, 400 on a
bad notification) and with stock, order and cart consistent.
"""

import time

import checkout_stripe
import pytest
from checkout_stripe.fake import REFUND_SWITCHES, REFUNDS, make_app, signed_event

from checkout_server.plugin import Faults, run_fake, shopper_choice
from checkout_server.testing import (
    RefundScenarios,
    RefundSwitches,
    WebhookGatewayScenarios,
    gateway_shop,
)

STRIPE = 3
SECRET = "whsec_e2e"
SETTINGS = {"secret_key": "sk_test_e2e", "sandbox": True, "webhook_secret": SECRET, "timeout": 0.5}


def stripe_shop(gateway_url: str | None = None):
    return gateway_shop(checkout_stripe, make_app, "stripe", SETTINGS, method_id=STRIPE, gateway_url=gateway_url)


def _refuse(fake):
    fake.app[REFUND_SWITCHES].refuse_with = "charge_disputed"


def _lose_answers(fake):
    fake.app[REFUND_SWITCHES].lose_answers = True


def _reset(fake):
    switches = fake.app[REFUND_SWITCHES]
    switches.refuse_with, switches.lose_answers, switches.pending = None, False, False


def _refunded(fake) -> int:
    return sum(r["amount"] for r in fake.app[REFUNDS].values() if r["status"] == "succeeded")


SWITCHES = RefundSwitches(refuse=_refuse, lose_answers=_lose_answers, reset=_reset, refunded=_refunded)


class TestStripeScenarios(WebhookGatewayScenarios, RefundScenarios):
    """The kit's gateway and refund scenarios against the fake Stripe."""

    refund_switches = SWITCHES

    plugin = checkout_stripe
    make_app = make_app
    provider = "stripe"
    settings = SETTINGS
    method_id = STRIPE
    payment_page = "/c/pay/cs_test_"
    expected_request = (4_500, "eur")  # the session's amount_total and currency
    verify_operation = "retrieve"
    amount_mismatch = Faults(amount_delta=-1_000)
    currency_mismatch = Faults(currency="usd")
    return_fault = Faults(status=503, only={"retrieve"})

    def payments(self, fake):
        return [(sid, session["client_reference_id"]) for sid, session in fake.state.records.items()]

    def requested(self, fake, reference):
        session = fake.state.records[reference]
        return session["amount_total"], session["currency"]

    def stranger_query(self, reference):
        return "cancelled=1"

    def paid_notification(self, fake, reference):
        return signed_event(fake.app, reference, "checkout.session.completed", SECRET)

    def assert_abandoned_payment_ended(self, fake, reference):
        # The shopper can no longer pay a cancelled order: its session is expired.
        assert fake.state.records[reference]["status"] == "expired"

    def assert_payment_untouched(self, fake, reference):
        assert fake.state.records[reference]["status"] == "open" and fake.state.count("expire") == 0


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
