"""PayPal captures that race: a refused capture is final only when PayPal declined the payment.

PayPal may refuse the second of two simultaneous requests with the same PayPal-Request-Id
(422 PREVIOUS_REQUEST_IN_PROGRESS) while it captures the first: that is not a declined
payment, and reading it as one would cancel an order PayPal is paying for.
"""

import asyncio
from datetime import UTC, datetime, timedelta

import checkout_paypal
import pytest
from checkout_paypal import PayPal, _Refused
from checkout_paypal.fake import hold_captures, make_app, signed_event

from checkout_server.plugin import PaymentState, shopper_choice
from checkout_server.testing import (
    gateway_shop,
    load_provider,
    make_order,
    make_urls,
    provider_on_fake,
    start_payment,
)

PAYPAL = 4
WEBHOOK_ID = "WH8PT597110X687430"
SETTINGS = {"client_id": "race-client", "client_secret": "race-secret", "sandbox": True,
            "webhook_id": WEBHOOK_ID, "timeout": 0.5}
ORDER = make_order("ORD-2026-000001", total=12_345, currency="EUR", payment={"paypal_order_id": "PP1"})


def captured_order(value="123.45", currency="EUR", status="COMPLETED"):
    return {"id": "PP1", "status": "COMPLETED", "purchase_units": [{"payments": {"captures": [
        {"id": "CAP1", "status": status, "amount": {"currency_code": currency, "value": value}}]}}]}


def paypal_answering(capture_issue: str, order_now: dict) -> tuple[PayPal, list[str]]:
    """A PayPal provider whose capture is refused with `capture_issue` and whose order reads `order_now`."""
    paypal = load_provider(PayPal, SETTINGS, PAYPAL)
    calls: list[str] = []

    async def api(method, path, body=None, *, raw=None, request_id=None):
        calls.append(f"{method} {path}")
        if path.endswith("/capture"):
            raise _Refused(422, "UNPROCESSABLE_ENTITY", capture_issue)
        return order_now

    paypal._api = api
    return paypal, calls


@pytest.mark.gen_test
@pytest.mark.parametrize("issue", ["PREVIOUS_REQUEST_IN_PROGRESS", "ORDER_ALREADY_CAPTURED",
                                   "SOME_ISSUE_PAYPAL_ADDS_LATER", None])
async def test_a_refused_capture_that_is_not_a_decline_is_decided_by_the_order_at_paypal(issue):
    # The other request captured meanwhile: paid, in the capture's own amount and currency.
    paypal, calls = paypal_answering(issue, captured_order("123.00", "USD"))
    for check in (await paypal.verify_return(ORDER, {"token": "PP1"}), await paypal.check(ORDER)):
        assert (check.state, check.amount, check.currency) == (PaymentState.PAID, 12_300, "USD")
    assert calls[:2] == ["POST /v2/checkout/orders/PP1/capture", "GET /v2/checkout/orders/PP1"]
    # Not captured (the order still reads APPROVED): the shopper's return leaves the hold.
    paypal, _calls = paypal_answering(issue, {"id": "PP1", "status": "APPROVED"})
    check = await paypal.verify_return(ORDER, {"token": "PP1"})
    assert check.state is PaymentState.PENDING and check.reference == "PP1"
    # A capture PayPal denied: the order says so.
    paypal, _calls = paypal_answering(issue, captured_order(status="DECLINED"))
    assert (await paypal.verify_return(ORDER, {"token": "PP1"})).state is PaymentState.FAILED


@pytest.mark.gen_test
async def test_at_hold_expiry_an_order_still_approved_is_pending_only_while_another_capture_runs():
    # A capture with the same PayPal-Request-Id in progress may still take the money: wait for it.
    paypal, _calls = paypal_answering("PREVIOUS_REQUEST_IN_PROGRESS", {"id": "PP1", "status": "APPROVED"})
    check = await paypal.check(ORDER)
    assert check.state is PaymentState.PENDING and check.reference == "PP1"


@pytest.mark.gen_test
@pytest.mark.parametrize("issue", ["ORDER_NOT_APPROVED", "PAYEE_ACCOUNT_RESTRICTED", "SOME_ISSUE_PAYPAL_ADDS_LATER",
                                   None])
async def test_at_hold_expiry_any_other_refused_capture_of_an_uncaptured_order_fails_it(issue, caplog):
    # No money moved; a refusal that lasts would otherwise keep the hold (and its stock) for ever.
    paypal, calls = paypal_answering(issue, {"id": "PP1", "status": "APPROVED"})
    check = await paypal.check(ORDER)
    assert check.state is PaymentState.FAILED and check.reference == "PP1"
    assert calls == ["GET /v2/checkout/orders/PP1", "POST /v2/checkout/orders/PP1/capture",
                     "GET /v2/checkout/orders/PP1"]
    named = issue or "UNPROCESSABLE_ENTITY"
    assert named in check.detail
    warnings = [r.getMessage() for r in caplog.records if r.name == "checkout_paypal" and r.levelname == "WARNING"
                and "hold ended" in r.getMessage()]
    assert len(warnings) == 1 and ORDER.order_key in warnings[0] and named in warnings[0]
    # The shopper's return, for the same answers, still leaves the hold.
    paypal, _calls = paypal_answering(issue, {"id": "PP1", "status": "APPROVED"})
    assert (await paypal.verify_return(ORDER, {"token": "PP1"})).state is PaymentState.PENDING


@pytest.mark.gen_test
@pytest.mark.parametrize("issue", ["INSTRUMENT_DECLINED", "TRANSACTION_REFUSED", "PAYER_CANNOT_PAY",
                                   "PAYER_ACCOUNT_RESTRICTED", "REDIRECT_PAYER_FOR_ALTERNATE_FUNDING",
                                   "MAX_NUMBER_OF_PAYMENT_ATTEMPTS_EXCEEDED", "COMPLIANCE_VIOLATION"])
async def test_a_declined_capture_fails_the_payment(issue):
    paypal, calls = paypal_answering(issue, {"id": "PP1", "status": "APPROVED"})
    check = await paypal.verify_return(ORDER, {"token": "PP1"})
    assert check.state is PaymentState.FAILED and issue in check.detail
    assert calls == ["POST /v2/checkout/orders/PP1/capture"]


@pytest.mark.gen_test(timeout=20)
async def test_the_fake_refuses_a_duplicate_capture_while_the_first_is_in_progress():
    async with provider_on_fake(PayPal, make_app, SETTINGS, PAYPAL) as (paypal, fake):
        start, paying = await start_payment(paypal, make_order(total=12_345), make_urls(PAYPAL))
        await shopper_choice(start.redirect_url, "approve")
        gate = hold_captures(fake.app)
        first = asyncio.ensure_future(paypal.verify_return(paying, {}))
        await gate.arrived.wait()
        second = await paypal.verify_return(paying, {})
        assert gate.refused == 1  # PREVIOUS_REQUEST_IN_PROGRESS
        assert second.state is PaymentState.PENDING
        assert (await paypal.check(paying)).state is PaymentState.PENDING and gate.refused == 2
        gate.release.set()
        check = await first
        assert (check.state, check.amount, check.currency) == (PaymentState.PAID, 12_345, "EUR")
        assert (await paypal.verify_return(paying, {})).state is PaymentState.PAID  # the replayed answer
        captures = fake.state.records[start.reference]["order"]["purchase_units"][0]["payments"]["captures"]
        assert len(captures) == 1


def paypal_shop():
    return gateway_shop(checkout_paypal, make_app, "paypal", SETTINGS, method_id=PAYPAL)


@pytest.mark.gen_test(timeout=30)
async def test_a_webhook_a_reload_and_hold_expiry_during_the_capture_never_cancel_the_order():
    async with paypal_shop() as gw:
        r = await gw.checkout()
        back = await shopper_choice(r.body["next_step"], "approve")
        key = await gw.last_order_key()
        ((paypal_id, _record),) = gw.fake.state.records.items()
        gate = hold_captures(gw.fake.app)
        returning = asyncio.ensure_future(gw.back_to_shop(back))
        await gate.arrived.wait()  # the shopper's return is capturing at PayPal
        # PayPal's approval webhook arrives meanwhile: it settles nothing and captures nothing.
        approved = signed_event(gw.fake.app, paypal_id, "CHECKOUT.ORDER.APPROVED", WEBHOOK_ID)
        r = await gw.notify(*approved)
        assert r.status == 200 and r.body["result"] == "pending"
        assert gw.fake.state.count("capture") == 1
        # The shopper reloads the return page, and the hold expires: both meet the capture in progress.
        r = await gw.back_to_shop(back)
        assert r.status == 302 and r.headers["Location"] == gw.result_url(key, "pending")
        report = await gw.shop.sweep(now=datetime.now(UTC) + timedelta(hours=1))
        assert report.deferred == [key] and report.cancelled == []
        assert gate.refused == 2
        await gw.assert_held(key)

        gate.release.set()
        r = await returning
        assert r.status == 302 and r.headers["Location"] == gw.result_url(key, "paid")
        await gw.assert_paid(key)
        captures = gw.fake.state.records[paypal_id]["order"]["purchase_units"][0]["payments"]["captures"]
        assert len(captures) == 1
        order = await gw.shop.storage.orders.get(key)
        assert not (order.get("payment") or {}).get("refund_needed")
