"""The PayPal provider against the local fake of PayPal Orders v2, method by method."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from checkout_paypal import PayPal
from checkout_paypal.fake import make_app, signed_event
from checkout_paypal.money import MoneyError, from_paypal, to_paypal

from checkout_server.plugin import (
    Faults,
    GatewayError,
    NotificationError,
    PaymentState,
    ProviderError,
    shopper_choice,
    transport_faults,
)
from checkout_server.testing import (
    check_payment_provider,
    load_provider,
    make_cart,
    make_order,
    make_urls,
    provider_on_fake,
    query_params,
    start_payment,
    unused_url,
)

PAYPAL = 4
WEBHOOK_ID = "8PT597110X687430LKGECATA"
SETTINGS = {"client_id": "fake-client", "client_secret": "fake-secret", "sandbox": True,
            "webhook_id": WEBHOOK_ID, "timeout": 0.5}
URLS = make_urls(PAYPAL)
FAULTS = transport_faults()


def order(total=12_345, currency="EUR", key="ORD-2026-000001"):
    return make_order(key, total=total, currency=currency)


def provider(**settings) -> PayPal:
    return load_provider(PayPal, {**SETTINGS, **settings}, PAYPAL)


def on_fake():
    return provider_on_fake(PayPal, make_app, SETTINGS, PAYPAL)


async def started(paypal, the_order=None):
    return await start_payment(paypal, the_order or order(), URLS)


def test_keeps_the_provider_contract_and_picks_its_host():
    check_payment_provider(PayPal, {"client_id": "x", "client_secret": "y"})
    assert provider().base_url == "https://api-m.sandbox.paypal.com"
    assert provider(sandbox=False).base_url == "https://api-m.paypal.com"
    assert not provider().supports(make_cart(currency="IRR"))
    assert provider().supports(make_cart(currency="JPY"))


def test_supports_refuses_a_whole_unit_currency_total_with_a_fraction():
    # The total, shipping included, is what start() sends: HUF and TWD in whole units only.
    cart = make_cart({"price": 150_000}, currency="HUF")
    assert provider().supports(cart) and provider().supports(replace(cart, shipping_cost=500))
    refused = provider().supports(replace(cart, shipping_cost=550))
    assert not refused and "HUF" in refused.reason and "whole units" in refused.reason
    assert not provider().supports(replace(make_cart({"price": 99_950}, currency="TWD"), shipping_cost=0))
    assert provider().supports(replace(make_cart({"price": 1_505}, currency="JPY"), shipping_cost=3))


def test_money_minds_zero_decimal_currencies():
    assert to_paypal(12_345, "EUR") == "123.45"
    assert to_paypal(1_500, "JPY") == "1500"  # yen have no minor unit
    assert to_paypal(150_000, "HUF") == "1500"  # PayPal takes forints in whole units only
    with pytest.raises(MoneyError):
        to_paypal(150_050, "HUF")
    assert to_paypal(1_234, "KWD") == "1.234"
    assert from_paypal("123.45", "EUR") == 12_345 and from_paypal("1500", "JPY") == 1_500
    for bad in ("12.345", "abc", "NaN", None):
        with pytest.raises(MoneyError):
            from_paypal(bad, "EUR")


@pytest.mark.gen_test(timeout=20)
async def test_approved_order_is_captured_once_and_paid_in_paypals_amount():
    async with on_fake() as (paypal, fake):
        start, paying = await started(paypal)
        record = fake.state.records[start.reference]
        assert start.redirect_url == f"{fake.base_url}/checkoutnow?token={start.reference}"
        assert record["order"]["purchase_units"][0]["amount"] == {"currency_code": "EUR", "value": "123.45"}

        back = await shopper_choice(start.redirect_url, "approve")
        assert query_params(back) == {"order": "ORD-2026-000001", "rt": "test-return-token",
                                      "token": start.reference, "PayerID": "FAKEPAYER42"}
        check = await paypal.verify_return(paying, query_params(back))
        assert (check.state, check.amount, check.currency) == (PaymentState.PAID, 12_345, "EUR")
        # Replayed return: the same PayPal-Request-Id answers the same capture.
        assert (await paypal.verify_return(paying, query_params(back))).amount == 12_345
        request_ids = {h.get("PayPal-Request-Id") for op, h in fake.state.calls if op == "capture"}
        assert request_ids == {"checkout-server-ORD-2026-000001-capture"}
        assert fake.state.count("token") == 1  # one token, reused


@pytest.mark.gen_test(timeout=20)
async def test_zero_decimal_currency_goes_out_as_whole_units():
    async with on_fake() as (paypal, _fake):
        start, paying = await started(paypal, order(total=1_500, currency="JPY"))
        await shopper_choice(start.redirect_url, "approve")
        check = await paypal.verify_return(paying, {})
        assert (check.state, check.amount, check.currency) == (PaymentState.PAID, 1_500, "JPY")
        with pytest.raises(ProviderError):
            await paypal.start(order(total=150_050, currency="HUF", key="ORD-2026-000002"), URLS)


@pytest.mark.gen_test(timeout=20)
async def test_retried_create_reuses_the_order():
    async with on_fake() as (paypal, fake):
        first, second = await paypal.start(order(), URLS), await paypal.start(order(), URLS)
        assert first.reference == second.reference and len(fake.state.records) == 1


@pytest.mark.gen_test(timeout=20)
async def test_declined_cancelled_and_unapproved_orders_are_not_paid():
    async with on_fake() as (paypal, fake):
        start, paying = await started(paypal)
        back = await shopper_choice(start.redirect_url, "decline")
        assert (await paypal.verify_return(paying, query_params(back))).state is PaymentState.FAILED

        start, paying = await started(paypal, order(key="ORD-2026-000002"))
        back = await shopper_choice(start.redirect_url, "cancel")
        assert query_params(back)["cancelled"] == "1"
        assert (await paypal.verify_return(paying, query_params(back))).state is PaymentState.FAILED
        assert fake.state.count("capture") == 1  # a cancel never captures

        # A forged return for an order the shopper has not approved: not paid, left to expiry.
        start, paying = await started(paypal, order(key="ORD-2026-000003"))
        assert (await paypal.verify_return(paying, {"token": start.reference})).state is PaymentState.PENDING
        assert (await paypal.check(paying)).state is PaymentState.FAILED  # the hold is over


@pytest.mark.gen_test(timeout=20)
async def test_hold_expiry_check_captures_an_approved_order():
    async with on_fake() as (paypal, fake):
        start, paying = await started(paypal)
        await shopper_choice(start.redirect_url, "approve")  # approved, browser closed
        check = await paypal.check(paying)
        assert check.state is PaymentState.PAID and fake.state.count("capture") == 1
        assert (await paypal.check(paying)).state is PaymentState.PAID
        assert fake.state.count("capture") == 1


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("faults, expected", [
    (Faults(amount_delta=-45), (12_300, "EUR")),
    (Faults(currency="USD"), (12_345, "USD")),
])
async def test_tampered_captures_are_reported_as_paypal_has_them(faults, expected):
    async with on_fake() as (paypal, fake):
        fake.state.faults = faults
        start, paying = await started(paypal)
        await shopper_choice(start.redirect_url, "approve")
        check = await paypal.verify_return(paying, {})
        assert (check.amount, check.currency) == expected


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("operation", ["token", "create", "capture"])
@pytest.mark.parametrize("fault", FAULTS)
async def test_gateway_faults_are_gateway_errors(operation, fault):
    async with on_fake() as (paypal, fake):
        faults = FAULTS[fault]
        faults.only = frozenset({operation})
        if operation == "capture":
            start, paying = await started(paypal)
            await shopper_choice(start.redirect_url, "approve")
            fake.state.faults = faults
            with pytest.raises(GatewayError):
                await paypal.verify_return(paying, {})
            fake.state.faults = Faults()
            assert (await paypal.verify_return(paying, {})).state is PaymentState.PAID
        else:
            fake.state.faults = faults
            with pytest.raises(GatewayError):
                await paypal.start(order(), URLS)


@pytest.mark.gen_test(timeout=20)
async def test_refused_connection_is_a_gateway_error():
    paypal = provider(base_url=unused_url())
    await paypal.startup()
    try:
        with pytest.raises(GatewayError, match="unreachable"):
            await paypal.start(order(), URLS)
    finally:
        await paypal.close()


@pytest.mark.gen_test(timeout=20)
async def test_webhooks_are_verified_with_paypal_and_read_from_the_order():
    async with on_fake() as (paypal, fake):
        start, paying = await started(paypal)
        await shopper_choice(start.redirect_url, "approve")
        headers, body = signed_event(fake.app, start.reference, "CHECKOUT.ORDER.APPROVED", WEBHOOK_ID)
        note = await paypal.parse_notification(headers, body)
        # An approval notice never captures: the shopper's return is capturing (a second capture
        # would race it) or hold expiry will. It says PENDING, so the core never calls check().
        assert note.order_key == "ORD-2026-000001" and note.reference == start.reference
        assert note.check.state is PaymentState.PENDING and fake.state.count("capture") == 0
        assert fake.state.count("verify_webhook") == 1
        assert (await paypal.check(paying)).amount == 12_345 and fake.state.count("capture") == 1

        # A completed capture's notice carries the capture's own amount and currency.
        headers, body = signed_event(fake.app, start.reference, "PAYMENT.CAPTURE.COMPLETED", WEBHOOK_ID)
        calls = len(fake.state.calls)
        note = await paypal.parse_notification(headers, body)
        assert note.order_key == "ORD-2026-000001" and note.reference == start.reference
        assert (note.check.state, note.check.amount, note.check.currency) == (PaymentState.PAID, 12_345, "EUR")
        assert [op for op, _ in fake.state.calls[calls:]] == ["verify_webhook"]  # read from the event

        forged = body.replace(b"ORD-2026-000001", b"ORD-2026-000009")
        other_hook = signed_event(fake.app, start.reference, "PAYMENT.CAPTURE.COMPLETED", "OTHERHOOK")
        stale = signed_event(fake.app, start.reference, "PAYMENT.CAPTURE.COMPLETED", WEBHOOK_ID,
                             when=datetime.now(UTC) - timedelta(minutes=10))
        no_headers = ({"Content-Type": "application/json"}, body)
        for bad_headers, bad_body in [(headers, forged), other_hook, stale, no_headers, (headers, b"{")]:
            with pytest.raises(NotificationError):
                await paypal.parse_notification(bad_headers, bad_body)


@pytest.mark.gen_test(timeout=20)
async def test_without_a_webhook_id_notifications_are_refused():
    with pytest.raises(NotificationError, match="webhook_id"):
        await provider(webhook_id=None).parse_notification({}, b"{}")


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("event_type", ["CHECKOUT.ORDER.APPROVED", "CHECKOUT.ORDER.COMPLETED"])
async def test_a_notification_about_an_unapproved_order_leaves_it_pending(event_type):
    # check() would call it "never approved" (FAILED: the hold is over); a notification
    # arriving while the shopper is still at PayPal must not, and always carries its own check.
    async with on_fake() as (paypal, fake):
        start, _paying = await started(paypal)
        note = await paypal.parse_notification(*signed_event(fake.app, start.reference, event_type, WEBHOOK_ID))
        assert note.order_key == "ORD-2026-000001" and note.check.state is PaymentState.PENDING
        assert fake.state.count("capture") == 0


@pytest.mark.gen_test(timeout=20)
async def test_request_ids_carry_the_orders_attempt_so_a_reused_order_key_starts_afresh():
    # Order keys repeat after a database reset or restore; the attempt id never does.
    async with on_fake() as (paypal, fake):
        first, paying = await started(paypal, replace(order(), attempt_id="a1b2c3d4e5f60718"))
        await shopper_choice(first.redirect_url, "approve")
        assert (await paypal.verify_return(paying, {})).state is PaymentState.PAID
        second, paying = await started(paypal, replace(order(), attempt_id="0f1e2d3c4b5a6978"))
        assert second.reference != first.reference and len(fake.state.records) == 2
        assert (await paypal.verify_return(paying, {})).state is PaymentState.PENDING  # not the old capture
        sent = [(op, h["PayPal-Request-Id"]) for op, h in fake.state.calls if op in ("create", "capture")]
        assert sent == [("create", "checkout-server-ORD-2026-000001-a1b2c3d4e5f60718-create"),
                        ("capture", "checkout-server-ORD-2026-000001-a1b2c3d4e5f60718-capture"),
                        ("create", "checkout-server-ORD-2026-000001-0f1e2d3c4b5a6978-create"),
                        ("capture", "checkout-server-ORD-2026-000001-0f1e2d3c4b5a6978-capture")]


@pytest.mark.gen_test(timeout=20)
async def test_a_denied_capture_notice_fails_the_payment():
    async with on_fake() as (paypal, fake):
        start, paying = await started(paypal)
        await shopper_choice(start.redirect_url, "approve")
        await paypal.check(paying)
        # PayPal denies the capture later (an eCheck bounces, say) and says so.
        fake.state.records[start.reference]["order"]["purchase_units"][0]["payments"]["captures"][0]["status"] = "DENIED"
        note = await paypal.parse_notification(*signed_event(fake.app, start.reference, "PAYMENT.CAPTURE.DENIED",
                                                             WEBHOOK_ID))
        assert note.check.state is PaymentState.FAILED and note.reference == start.reference
