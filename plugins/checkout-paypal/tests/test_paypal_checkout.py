"""End to end: checkout, return, webhooks and hold expiry through the real app and the fake PayPal.

Every fault ends with a clear answer (503 at checkout, 302 with the result on return, 400 on a
bad notification) and with stock, order and cart consistent.
"""

from datetime import UTC, datetime, timedelta
from typing import ClassVar

import checkout_paypal
import pytest
from checkout_paypal.fake import (
    REFUND_SWITCHES,
    REFUNDS,
    make_app,
    refuse_captures,
    signed_event,
)

from checkout_server.plugin import (
    Faults,
    PaymentState,
    run_fake,
    shopper_choice,
    with_query,
)
from checkout_server.testing import (
    COURIER_ID,
    RETURN_URL,
    SHOP_URL,
    CourierPlugin,
    FixedRateCourier,
    RefundScenarios,
    RefundSwitches,
    TestShop,
    WebhookGatewayScenarios,
    assert_consistent,
    gateway_shop,
)

PAYPAL = 4
WEBHOOK_ID = "WH8PT597110X687430"
SETTINGS = {"client_id": "e2e-client", "client_secret": "e2e-secret", "sandbox": True,
            "webhook_id": WEBHOOK_ID, "timeout": 0.5}


def paypal_shop(gateway_url: str | None = None):
    return gateway_shop(checkout_paypal, make_app, "paypal", SETTINGS, method_id=PAYPAL, gateway_url=gateway_url)


def paypal_orders(fake) -> list[tuple[str, str]]:
    """(PayPal order id, our order key) of each order the fake holds, oldest first."""
    return [(pid, rec["order"]["purchase_units"][0]["custom_id"]) for pid, rec in fake.state.records.items()]


def _refuse(fake):
    fake.app[REFUND_SWITCHES].refuse_with = "REFUND_NOT_ALLOWED"


def _lose_answers(fake):
    fake.app[REFUND_SWITCHES].lose_answers = True


def _reset(fake):
    switches = fake.app[REFUND_SWITCHES]
    switches.refuse_with, switches.lose_answers, switches.pending = None, False, False


def _refunded(fake) -> int:
    return sum(r["_minor"] for r in fake.app[REFUNDS].values() if r["status"] == "COMPLETED")


SWITCHES = RefundSwitches(refuse=_refuse, lose_answers=_lose_answers, reset=_reset, refunded=_refunded)


class TestPayPalScenarios(WebhookGatewayScenarios, RefundScenarios):
    """The kit's gateway scenarios against the fake PayPal."""

    refund_switches = SWITCHES

    plugin = checkout_paypal
    make_app = make_app
    provider = "paypal"
    settings = SETTINGS
    method_id = PAYPAL
    payment_page = "/checkoutnow?token="
    expected_request: ClassVar[dict] = {"currency_code": "EUR", "value": "45.00"}
    verify_operation = "capture"
    verifications_per_payment = 1
    amount_mismatch = Faults(amount_delta=-1_000)
    currency_mismatch = Faults(currency="USD")
    return_fault = Faults(delay=2, only={"capture"})  # the capture times out

    def payments(self, fake):
        return paypal_orders(fake)

    def requested(self, fake, reference):
        return fake.state.records[reference]["order"]["purchase_units"][0]["amount"]

    def stranger_query(self, reference):
        return "cancelled=1"

    def paid_notification(self, fake, reference):
        # PayPal says the shopper approved; the capture is the shop's (return or hold expiry).
        return signed_event(fake.app, reference, "CHECKOUT.ORDER.APPROVED", WEBHOOK_ID)

    def assert_settled_once_at_gateway(self, fake, reference):
        # However many captures were attempted, PayPal captured once (same PayPal-Request-Id).
        assert len(fake.state.records[reference]["order"]["purchase_units"][0]["payments"]["captures"]) == 1


@pytest.mark.gen_test(timeout=30)
async def test_forged_or_stale_notifications_are_400_and_change_nothing():
    async with paypal_shop() as gw:
        r = await gw.checkout()
        await shopper_choice(r.body["next_step"], "approve")
        ((paypal_id, key),) = paypal_orders(gw.fake)
        headers, body = signed_event(gw.fake.app, paypal_id, "CHECKOUT.ORDER.APPROVED", WEBHOOK_ID)
        forged = signed_event(gw.fake.app, paypal_id, "CHECKOUT.ORDER.APPROVED", "ANOTHERHOOK")
        stale = signed_event(gw.fake.app, paypal_id, "CHECKOUT.ORDER.APPROVED", WEBHOOK_ID,
                             when=datetime.now(UTC) - timedelta(minutes=10))
        tampered = (headers, body.replace(b'"APPROVED"', b'"VOIDED"'))
        for bad_headers, bad_body in (forged, stale, tampered, ({}, body)):
            r = await gw.notify(bad_headers, bad_body)
            assert r.status == 400 and "notification refused" in r.body["error"]
        await gw.assert_held(key)
        assert gw.fake.state.count("capture") == 0
        # The genuine approval is accepted but captures nothing (the shopper's return or hold
        # expiry does); its replay is recognised.
        r = await gw.notify(headers, body)
        assert r.status == 200 and r.body["result"] == "pending"
        r = await gw.notify(headers, body)
        assert r.status == 200 and r.body["status"] == "duplicate"
        assert gw.fake.state.count("capture") == 0
        await gw.assert_held(key)


@pytest.mark.gen_test(timeout=30)
async def test_a_capture_paypal_keeps_refusing_is_cancelled_at_hold_expiry(caplog):
    # Approved, but PayPal refuses every capture with an issue that is not a decline (a payee
    # account problem): the return leaves the hold, and hold expiry ends it with the units back.
    async with paypal_shop() as gw:
        r = await gw.checkout()
        back = await shopper_choice(r.body["next_step"], "approve")
        ((paypal_id, key),) = paypal_orders(gw.fake)
        refuse_captures(gw.fake.app, "PAYEE_ACCOUNT_RESTRICTED")
        r = await gw.back_to_shop(back)
        assert r.status == 302 and r.headers["Location"] == gw.result_url(key, "pending")
        await gw.assert_held(key)
        report = await gw.shop.sweep(now=datetime.now(UTC) + timedelta(hours=1))
        assert report.cancelled == [key] and report.deferred == []
        await gw.assert_cancelled(key)
        assert gw.fake.state.records[paypal_id]["order"]["status"] == "APPROVED"  # nothing captured
        assert any(key in w and "PAYEE_ACCOUNT_RESTRICTED" in w for w in
                   (rec.getMessage() for rec in caplog.records if rec.levelname == "WARNING"))
        # The next sweep finds nothing left to decide.
        report = await gw.shop.sweep(now=datetime.now(UTC) + timedelta(hours=2))
        assert report.cancelled == report.deferred == []


@pytest.mark.gen_test(timeout=30)
async def test_an_order_the_shop_cancelled_is_never_captured_when_approved_late():
    async with paypal_shop() as gw:
        r = await gw.checkout()
        ((paypal_id, key),) = paypal_orders(gw.fake)
        # The hold expires before the shopper acts: the shop cancels and gives the units back.
        report = await gw.shop.sweep(now=datetime.now(UTC) + timedelta(hours=1))
        assert report.cancelled == [key]
        # The slow shopper approves at PayPal anyway; the return and the webhook follow.
        back = await shopper_choice(r.body["next_step"], "approve")
        r = await gw.back_to_shop(back)
        assert r.headers["Location"] == gw.result_url(key, "failed")
        r = await gw.notify(*signed_event(gw.fake.app, paypal_id, "CHECKOUT.ORDER.APPROVED", WEBHOOK_ID))
        assert r.status == 200 and r.body["result"] == "failed"
        assert gw.fake.state.count("capture") == 0  # no money taken for a cancelled order
        assert gw.fake.state.records[paypal_id]["order"]["status"] == "APPROVED"
        await gw.assert_cancelled(key)


async def _cancelled_after_approval(gw):
    """Approved at PayPal in one tab, cancelled in another: (PayPal id, key, the order as read before)."""
    r = await gw.checkout()
    ((paypal_id, key),) = paypal_orders(gw.fake)
    await shopper_choice(r.body["next_step"], "approve")
    on_hold = await gw.shop.storage.orders.get(key)
    cancel = with_query(gw.fake.state.records[paypal_id]["cancel_url"], {"token": paypal_id})
    r = await gw.back_to_shop(cancel)
    assert r.headers["Location"] == gw.result_url(key, "failed")
    await gw.assert_cancelled(key)
    return paypal_id, key, on_hold


async def _assert_refund_needed(gw, key, caplog):
    order = await gw.shop.storage.orders.get(key)
    assert order["status"] == "CANCELLED" and order["payment"]["refund_needed"] is True
    assert [h["reason"] for h in order["history"]].count(
        "payment received after the order was cancelled: refund needed") == 1
    # Every unit went back exactly once, the cart is as it was: only the money is left to return.
    product = await gw.shop.storage.products.get(gw.product_id)
    assert product["stock"] == gw.stock and product["received"] == gw.stock
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors and all(key in e and "refund" in e for e in errors), errors


@pytest.mark.gen_test(timeout=30)
async def test_a_capture_that_loses_the_race_to_a_cancel_is_flagged_for_a_refund(caplog):
    async with paypal_shop() as gw:
        paypal_id, key, on_hold = await _cancelled_after_approval(gw)
        # The hold-expiry sweep read the order on HOLD just before the cancel, and captured.
        provider = gw.shop.methods.payment[PAYPAL].provider
        check = await provider.check(gw.shop.order_info(on_hold))
        assert check.state is PaymentState.PAID and gw.fake.state.count("capture") == 1
        outcome = await gw.shop.settle(on_hold, check)
        assert outcome.result == "failed" and not outcome.changed
        await _assert_refund_needed(gw, key, caplog)
        # PayPal's own capture webhook for it: logged again, flagged once.
        r = await gw.notify(*signed_event(gw.fake.app, paypal_id, "PAYMENT.CAPTURE.COMPLETED", WEBHOOK_ID))
        assert r.status == 200 and r.body["result"] == "failed"
        await _assert_refund_needed(gw, key, caplog)


@pytest.mark.gen_test(timeout=30)
async def test_a_completed_capture_webhook_for_a_cancelled_order_flags_it_for_a_refund(caplog):
    async with paypal_shop() as gw:
        paypal_id, key, on_hold = await _cancelled_after_approval(gw)
        provider = gw.shop.methods.payment[PAYPAL].provider
        assert (await provider.check(gw.shop.order_info(on_hold))).state is PaymentState.PAID  # captured, not settled
        caplog.clear()
        r = await gw.notify(*signed_event(gw.fake.app, paypal_id, "PAYMENT.CAPTURE.COMPLETED", WEBHOOK_ID))
        assert r.status == 200 and r.body["result"] == "failed"
        await _assert_refund_needed(gw, key, caplog)


@pytest.mark.gen_test(timeout=30)
async def test_an_order_key_used_again_after_a_database_reset_gets_a_new_paypal_order():
    async with run_fake(make_app) as fake:
        async with paypal_shop(fake.base_url) as first:
            r = await first.checkout()
            await first.follow(r.body["next_step"], "approve")
            ((old_id, key),) = paypal_orders(fake)
            await first.assert_paid(key)
        # The database is reset or restored: the order key is handed out again.
        async with paypal_shop(fake.base_url) as gw:
            started = await gw.checkout()
            assert await gw.last_order_key() == key
            assert started.status == 200 and old_id not in started.body["next_step"]
            ((new_id, _), (old_id_again, _)) = sorted(paypal_orders(fake), key=lambda o: o[0] == old_id)
            assert old_id_again == old_id
            # Back from PayPal without approving: nothing to capture, the order is not paid.
            back = with_query(fake.state.records[new_id]["return_url"], {"token": new_id})
            r = await gw.back_to_shop(back)
            assert r.headers["Location"] == gw.result_url(key, "pending")
            await gw.assert_held(key)
            r = await gw.follow(started.body["next_step"], "approve")
            assert r.headers["Location"] == gw.result_url(key, "paid")
            await gw.assert_paid(key)
            captures = {h["PayPal-Request-Id"] for op, h in fake.state.calls if op == "capture"}
            assert len(captures) == 2  # one per order, though both had the same key



@pytest.mark.gen_test(timeout=30)
async def test_a_whole_unit_currency_total_with_a_fraction_is_refused_at_checkout():
    # Forints go to PayPal in whole units: 3000 HUF of goods can, plus 5.50 HUF of shipping cannot.
    config = {
        "site": {"currency": "HUF", "return_url": RETURN_URL, "base_url": SHOP_URL},
        "payment_methods": [{"id": PAYPAL, "provider": "paypal", "title": "PayPal", "settings": dict(SETTINGS)}],
        "shipping_methods": [{"id": COURIER_ID, "provider": FixedRateCourier.name, "title": "Courier",
                              "settings": {"cost": 550}}],
    }
    async with run_fake(make_app) as fake:
        config["payment_methods"][0]["settings"]["base_url"] = fake.base_url
        async with TestShop(config=config, plugins=[checkout_paypal, CourierPlugin]) as shop:
            product = await shop.product(price=150_000, stock=5)
            customer = await shop.customer(cart={product["_id"]: 2})
            r = await customer.request("GET", f"/api/shop/checkout/methods?address={customer.address_id}")
            assert [m["id"] for m in r.body["payment_methods"]] == [PAYPAL]  # the goods alone: whole
            r = await customer.checkout(PAYPAL, COURIER_ID)
            assert r.status == 400, r
            assert "whole units" in r.body["error"] and "payment_method" in r.body["fields"]
            assert fake.state.count("create") == 0
            await assert_consistent(shop, None, customer=customer, stock={product["_id"]: 5},
                                    cart={product["_id"]: 2})
