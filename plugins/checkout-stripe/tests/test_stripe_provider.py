"""The Stripe provider against the local fake of Stripe Checkout, method by method."""

import json
import time
from dataclasses import replace

import pytest
from checkout_stripe import Stripe, form_encode, sign, verify_signature
from checkout_stripe.fake import make_app, signed_event
from marshmallow import ValidationError

from checkout_server.plugin import (
    Faults,
    GatewayError,
    NotificationError,
    PaymentState,
    shopper_choice,
    transport_faults,
)
from checkout_server.testing import (
    check_payment_provider,
    load_provider,
    make_order,
    make_urls,
    provider_on_fake,
    query_params,
    start_payment,
    unused_url,
)

STRIPE = 3
KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
SECRET = "whsec_test_secret"
SETTINGS = {"secret_key": KEY, "sandbox": True, "webhook_secret": SECRET, "timeout": 0.5}
URLS = make_urls(STRIPE)
FAULTS = transport_faults()


def order(key="ORD-2026-000001"):
    return make_order(key, total=4_990, description="Order ORD-2026-000001")


def provider(**settings) -> Stripe:
    return load_provider(Stripe, {**SETTINGS, **settings}, STRIPE)


def on_fake(**settings):
    return provider_on_fake(Stripe, make_app, {**SETTINGS, **settings}, STRIPE)


async def started(stripe, the_order=None):
    return await start_payment(stripe, the_order or order(), URLS)


def test_keeps_the_provider_contract_and_checks_its_settings():
    check_payment_provider(Stripe, {"secret_key": KEY, "sandbox": True})
    with pytest.raises(ValidationError) as exc:
        Stripe.settings_schema().load({"secret_key": KEY})  # a test key in live mode
    assert "secret_key" in exc.value.messages
    with pytest.raises(ValidationError):
        Stripe.settings_schema().load({"secret_key": "pk_test_publishable", "sandbox": True})
    assert provider().base_url == "https://api.stripe.com"


def test_form_encoding_nests_like_stripe():
    assert form_encode({"a": {"b": [{"c": 1}, {"c": True}]}, "d": None, "e": "x"}) == [
        ("a[b][0][c]", "1"), ("a[b][1][c]", "true"), ("e", "x")]


@pytest.mark.gen_test(timeout=20)
async def test_paid_session_is_reported_in_stripes_amount_and_currency():
    async with on_fake() as (stripe, fake):
        start, paying = await started(stripe)
        session = fake.state.records[start.reference]
        assert start.redirect_url == session["url"] and start.data == {"session_id": session["id"]}
        assert (session["amount_total"], session["currency"]) == (4_990, "eur")
        assert session["client_reference_id"] == "ORD-2026-000001"
        assert session["success_url"] == URLS.return_url + "&session_id={CHECKOUT_SESSION_ID}"

        back = await shopper_choice(start.redirect_url, "approve")
        assert query_params(back) == {"order": "ORD-2026-000001", "rt": "test-return-token", "session_id": start.reference}
        check = await stripe.verify_return(paying, query_params(back))
        assert (check.state, check.amount, check.currency) == (PaymentState.PAID, 4_990, "EUR")
        assert (await stripe.verify_return(paying, query_params(back))) == check  # a replayed return


@pytest.mark.gen_test(timeout=20)
async def test_retried_start_reuses_the_session_through_the_idempotency_key():
    async with on_fake() as (stripe, fake):
        first = await stripe.start(order(), URLS)
        second = await stripe.start(order(), URLS)
        assert first.reference == second.reference and len(fake.state.records) == 1
        keys = {headers.get("Idempotency-Key") for op, headers in fake.state.calls if op == "create"}
        assert keys == {"checkout-server-ORD-2026-000001-session"}


@pytest.mark.gen_test(timeout=20)
async def test_return_never_trusts_the_session_id_in_the_query():
    async with on_fake() as (stripe, _fake):
        start, paying = await started(stripe)
        other, _ = await started(stripe, order("ORD-2026-000002"))
        await shopper_choice(other.redirect_url, "approve")  # someone else's paid session
        check = await stripe.verify_return(paying, {"session_id": other.reference})
        assert check.state is PaymentState.PENDING and check.reference == start.reference


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("choice", ["cancel", "decline"])
async def test_cancelled_or_declined_shopper_fails_and_the_session_is_closed(choice):
    async with on_fake() as (stripe, fake):
        start, paying = await started(stripe)
        back = await shopper_choice(start.redirect_url, choice)
        assert query_params(back)["cancelled"] == "1"
        check = await stripe.verify_return(paying, query_params(back))
        assert check.state is PaymentState.FAILED
        assert fake.state.records[start.reference]["status"] == "expired"  # can't be paid later


@pytest.mark.gen_test(timeout=20)
async def test_hold_expiry_check_expires_open_sessions_and_keeps_paid_ones():
    async with on_fake() as (stripe, _fake):
        start, paying = await started(stripe)
        assert (await stripe.check(paying)).state is PaymentState.FAILED
        with pytest.raises(AssertionError):  # the shopper's page is gone
            await shopper_choice(start.redirect_url, "approve")
        start, paying = await started(stripe, order("ORD-2026-000002"))
        await shopper_choice(start.redirect_url, "approve")  # paid, never came back
        assert (await stripe.check(paying)).state is PaymentState.PAID
        # A "cancel" arriving after the payment went through still reports the payment.
        assert (await stripe.verify_return(paying, {"cancelled": "1"})).state is PaymentState.PAID


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("faults, expected", [
    (Faults(amount_delta=-100), (4_890, "EUR")),
    (Faults(currency="usd"), (4_990, "USD")),
])
async def test_tampered_amounts_are_reported_as_the_gateway_has_them(faults, expected):
    async with on_fake() as (stripe, fake):
        fake.state.faults = faults
        start, paying = await started(stripe)
        back = await shopper_choice(start.redirect_url, "approve")
        check = await stripe.verify_return(paying, query_params(back))
        # The core compares these with the order's and refuses to settle.
        assert (check.amount, check.currency) == expected


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("operation", ["create", "retrieve"])
@pytest.mark.parametrize("fault", FAULTS)
async def test_gateway_faults_are_gateway_errors(operation, fault):
    async with on_fake() as (stripe, fake):
        faults = FAULTS[fault]
        faults.only = frozenset({operation})
        fake.state.faults = faults
        if operation == "create":
            with pytest.raises(GatewayError):
                await stripe.start(order(), URLS)
        else:
            _start, paying = await started(stripe)
            with pytest.raises(GatewayError):
                await stripe.verify_return(paying, {})


@pytest.mark.gen_test(timeout=20)
async def test_refused_connection_and_bad_key_are_gateway_errors():
    stripe = provider(base_url=unused_url())
    await stripe.startup()
    try:
        with pytest.raises(GatewayError, match="unreachable"):
            await stripe.start(order(), URLS)
    finally:
        await stripe.close()
    async with on_fake(secret_key="sk_live_real", sandbox=False) as (stripe, _fake):
        with pytest.raises(GatewayError, match="invalid_request_error"):
            await stripe.start(order(), URLS)


@pytest.mark.gen_test(timeout=20)
async def test_signed_webhooks_are_read_and_forged_or_stale_ones_refused():
    async with on_fake() as (stripe, fake):
        start, _paying = await started(stripe)
        await shopper_choice(start.redirect_url, "approve")
        headers, body = signed_event(fake.app, start.reference, "checkout.session.completed", SECRET)
        note = await stripe.parse_notification(headers, body)
        assert note.order_key == "ORD-2026-000001" and note.event_id == json.loads(body)["id"]
        assert (note.check.state, note.check.amount, note.check.currency) == (PaymentState.PAID, 4_990, "EUR")

        forged = body.replace(b'"amount_total": 4990', b'"amount_total": 1')
        stale = signed_event(fake.app, start.reference, "checkout.session.completed", SECRET,
                             timestamp=int(time.time()) - 301)
        wrong_key = signed_event(fake.app, start.reference, "checkout.session.completed", "whsec_other")
        for bad_headers, bad_body in [(headers, forged), stale, wrong_key, ({}, body),
                                      ({"stripe-signature": "t=abc,v1=00"}, body)]:
            with pytest.raises(NotificationError):
                await stripe.parse_notification(bad_headers, bad_body)

        expired = signed_event(fake.app, start.reference, "checkout.session.async_payment_failed", SECRET)
        assert (await stripe.parse_notification(*expired)).check.state is PaymentState.FAILED
        other = json.dumps({"id": "evt_1", "type": "charge.refunded", "data": {"object": {}}}).encode()
        now = int(time.time())
        note = await stripe.parse_notification({"Stripe-Signature": f"t={now},v1={sign(other, SECRET, now)}"},
                                               other)
        assert note.order_key is None and note.event_id == "evt_1"


def test_signature_tolerance_both_ways_and_any_matching_v1():
    body, now = b'{"id": "evt_1"}', 1_700_000_000
    good = sign(body, SECRET, now)
    assert verify_signature(body, f"t={now},v1=deadbeef,v1={good}", SECRET, 300, now=now + 300) == now
    for when in (now + 301, now - 301):
        with pytest.raises(NotificationError, match="tolerance"):
            verify_signature(body, f"t={now},v1={good}", SECRET, 300, now=when)
    with pytest.raises(NotificationError, match="no v1"):
        verify_signature(body, f"t={now},v0={good}", SECRET, 300, now=now)


@pytest.mark.gen_test(timeout=20)
async def test_without_a_webhook_secret_notifications_are_refused():
    stripe = provider(webhook_secret=None)
    with pytest.raises(NotificationError, match="webhook_secret"):
        await stripe.parse_notification({}, b"{}")


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("event_type", ["checkout.session.completed", "checkout.session.async_payment_succeeded",
                                        "checkout.session.async_payment_failed", "checkout.session.expired"])
async def test_notifications_always_carry_their_check_and_never_expire_a_session(event_type):
    # With check=None the core would call check(), which expires an open session: a shopper
    # still on Stripe's page would lose the payment. Every event about an order answers its own.
    async with on_fake() as (stripe, fake):
        start, _paying = await started(stripe)
        note = await stripe.parse_notification(*signed_event(fake.app, start.reference, event_type, SECRET))
        assert note.order_key == "ORD-2026-000001" and note.check is not None
        assert fake.state.count("expire") == 0 and fake.state.records[start.reference]["status"] == "open"


@pytest.mark.gen_test(timeout=20)
async def test_the_idempotency_key_carries_the_orders_attempt_so_a_reused_order_key_gets_a_new_session():
    # Order keys repeat after a database reset or restore; the attempt id never does.
    async with on_fake() as (stripe, fake):
        first, paying = await started(stripe, replace(order(), attempt_id="a1b2c3d4e5f60718"))
        await shopper_choice(first.redirect_url, "approve")
        assert (await stripe.verify_return(paying, {})).state is PaymentState.PAID
        second, paying = await started(stripe, replace(order(), attempt_id="0f1e2d3c4b5a6978"))
        assert second.reference != first.reference and len(fake.state.records) == 2
        assert (await stripe.verify_return(paying, {})).state is PaymentState.PENDING
        keys = [h["Idempotency-Key"] for op, h in fake.state.calls if op == "create"]
        assert keys == ["checkout-server-ORD-2026-000001-a1b2c3d4e5f60718-session",
                        "checkout-server-ORD-2026-000001-0f1e2d3c4b5a6978-session"]


@pytest.mark.gen_test(timeout=20)
async def test_a_session_event_without_a_session_id_is_refused():
    # The core settles an event only about the order's own session: it must name one.
    body = json.dumps({"id": "evt_2", "type": "checkout.session.completed",
                       "data": {"object": {"client_reference_id": "ORD-2026-000001", "payment_status": "paid",
                                           "amount_total": 4_990, "currency": "eur"}}}).encode()
    now = int(time.time())
    with pytest.raises(NotificationError, match="session id"):
        await provider().parse_notification({"Stripe-Signature": f"t={now},v1={sign(body, SECRET, now)}"}, body)
