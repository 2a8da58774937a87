"""PayPal end to end: a pending capture outlives the hold."""

from datetime import UTC, datetime, timedelta

import checkout_paypal
import pytest
from checkout_paypal.fake import make_app

from checkout_server.plugin import shopper_choice
from checkout_server.testing import gateway_shop

PAYPAL = 4
SETTINGS = {"client_id": "e2e-client", "client_secret": "e2e-secret", "sandbox": True, "timeout": 0.5}


def paypal_shop():
    return gateway_shop(checkout_paypal, make_app, "paypal", SETTINGS, method_id=PAYPAL)


@pytest.mark.gen_test(timeout=30)
async def test_a_capture_pending_at_paypal_at_expiry_keeps_the_hold():
    async with paypal_shop() as gw:
        r = await gw.checkout()
        key = await gw.last_order_key()
        await shopper_choice(r.body["next_step"], "approve")
        # Captured, but PayPal holds the capture for review (PENDING): the money may still come.
        ((_paypal_id, record),) = gw.fake.state.records.items()
        order = record["order"]
        amount = order["purchase_units"][0]["amount"]
        order["status"] = "COMPLETED"
        order["purchase_units"][0]["payments"] = {"captures": [
            {"id": "CAPTURE-REVIEW", "status": "PENDING", "amount": dict(amount)}]}
        later = datetime.now(UTC) + timedelta(hours=1)
        report = await gw.shop.sweep(now=later)
        assert report.deferred == [key] and report.cancelled == []
        await gw.assert_held(key)
        # The review clears: the next sweep settles the order as paid.
        order["purchase_units"][0]["payments"]["captures"][0]["status"] = "COMPLETED"
        report = await gw.shop.sweep(now=later)
        assert report.paid == [key]
        await gw.assert_paid(key)
