"""Stripe end to end: a payment in flight outlives the hold."""

from datetime import UTC, datetime, timedelta

import checkout_stripe
import pytest
from checkout_stripe.fake import make_app, signed_event

from checkout_server.testing import gateway_shop

STRIPE = 3
SECRET = "whsec_e2e"
SETTINGS = {"secret_key": "sk_test_e2e", "sandbox": True, "webhook_secret": SECRET, "timeout": 0.5}


def stripe_shop():
    return gateway_shop(checkout_stripe, make_app, "stripe", SETTINGS, method_id=STRIPE)


@pytest.mark.gen_test(timeout=30)
async def test_an_asynchronous_payment_still_processing_at_expiry_keeps_the_hold():
    async with stripe_shop() as gw:
        await gw.checkout()
        ((session_id, session),) = gw.fake.state.records.items()
        key = session["client_reference_id"]
        # Paid by SEPA debit: the session is complete, the money not there yet.
        session.update(status="complete", payment_status="unpaid")
        later = datetime.now(UTC) + timedelta(hours=1)
        report = await gw.shop.sweep(now=later)
        assert report.deferred == [key] and report.cancelled == []
        await gw.assert_held(key)
        # Days later the debit succeeds and Stripe says so.
        session.update(payment_status="paid")
        r = await gw.notify(*signed_event(gw.fake.app, session_id, "checkout.session.async_payment_succeeded",
                                          SECRET))
        assert r.status == 200 and r.body["result"] == "paid"
        await gw.assert_paid(key)
