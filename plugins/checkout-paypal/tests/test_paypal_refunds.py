"""PayPal refunds: the capture's refund against the fake, and the shared refund scenarios end to end."""

import checkout_paypal
import pytest
from checkout_paypal import PayPal
from checkout_paypal.fake import (
    CAPTURES,
    REFUND_SWITCHES,
    REFUNDS,
    make_app,
    settle_refund,
    signed_refund_event,
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
    query_params,
    start_payment,
)

PAYPAL = 4
WEBHOOK_ID = "WH8PT597110X687430"
SETTINGS = {"client_id": "e2e-client", "client_secret": "e2e-secret", "sandbox": True,
            "webhook_id": WEBHOOK_ID, "timeout": 0.5}


def paypal_shop():
    return gateway_shop(checkout_paypal, make_app, "paypal", SETTINGS, method_id=PAYPAL)


@pytest.mark.gen_test(timeout=20)
async def test_refund_refunds_the_capture_with_a_request_id_per_attempt():
    async with provider_on_fake(PayPal, make_app, SETTINGS, PAYPAL) as (paypal, fake):
        start, paying = await start_payment(paypal, make_order(total=4_990, attempt_id="a1"))
        back = await shopper_choice(start.redirect_url, "approve")
        assert (await paypal.verify_return(paying, query_params(back))).state is PaymentState.PAID
        first = await paypal.refund(paying, RefundRequest(1_000, "EUR", "r1"))
        again = await paypal.refund(paying, RefundRequest(1_000, "EUR", "r1"))  # a retry of that attempt
        assert (first.state, first.amount, first.currency) == (RefundState.SUCCEEDED, 1_000, "EUR")
        assert again.reference == first.reference and len(fake.app[REFUNDS]) == 1
        (capture,) = fake.app[CAPTURES].values()
        assert capture["status"] == "PARTIALLY_REFUNDED"
        keys = [h["PayPal-Request-Id"] for op, h in fake.state.calls if op == "refund"]
        assert keys == ["checkout-server-ORD-2026-000001-a1-refund-r1"] * 2
        rest = await paypal.refund(paying, RefundRequest(3_990, "EUR", "r2"))
        assert rest.state is RefundState.SUCCEEDED and capture["status"] == "REFUNDED"
        over = await paypal.refund(paying, RefundRequest(1, "EUR", "r3"))
        assert over.state is RefundState.FAILED and "CAPTURE_FULLY_REFUNDED" in over.detail


@pytest.mark.gen_test(timeout=30)
async def test_cancel_of_an_approved_unpaid_order_never_captures_it():
    async with paypal_shop() as gw:
        r = await gw.checkout()
        key = await gw.last_order_key()
        back = await shopper_choice(r.body["next_step"], "approve")  # approved, the shopper never came back
        r = await admin_cancel(gw, key)
        assert r.status == 200 and r.body["status"] == "CANCELLED", r
        assert gw.fake.state.count("capture") == 0 and gw.fake.app[CAPTURES] == {}
        r = await gw.back_to_shop(back)  # a late return captures nothing either
        assert r.headers["Location"].endswith("payment=failed") and gw.fake.state.count("capture") == 0
        await gw.assert_cancelled(key)


@pytest.mark.gen_test(timeout=30)
async def test_a_pending_refund_is_finished_by_its_webhook_once_and_a_manual_one_by_the_sweeper():
    async with paypal_shop() as gw:
        key = await paid_order(gw)
        gw.fake.app[REFUND_SWITCHES].pending = True
        r = await admin_refund(gw, key, {"amount": 500})
        assert r.status == 200 and r.body["payment"]["refunds"][0]["status"] == "pending"
        (first,) = gw.fake.app[REFUNDS]
        settle_refund(gw.fake.app, first)
        headers, body = signed_refund_event(gw.fake.app, first, WEBHOOK_ID)
        for _ in range(2):
            answer = await gw.notify(headers, body)
            assert answer.status == 200 and answer.body["order_key"] == key, answer
        order = await gw.shop.storage.orders.get(key)
        assert [(e["amount"], e["status"]) for e in order["payment"]["refunds"]] == [(500, "succeeded")]
        r = await admin_refund(gw, key, {"amount": 300})
        (second,) = set(gw.fake.app[REFUNDS]) - {first}
        settle_refund(gw.fake.app, second)
        assert (await gw.shop.sweep()).refunds_finished == [key]
        order = await gw.shop.storage.orders.get(key)
        assert [(e["amount"], e["status"]) for e in order["payment"]["refunds"]] == [(500, "succeeded"),
                                                                                   (300, "succeeded")]
        assert order["payment"]["refund_pending"] is False
