"""The Zarinpal provider against the local fake of Zarinpal v4, method by method."""

import logging
from dataclasses import replace

import pytest
from checkout_zarinpal import Zarinpal
from checkout_zarinpal.fake import make_app
from marshmallow import ValidationError

from checkout_server.plugin import (
    Faults,
    GatewayError,
    PaymentState,
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

ZARINPAL = 7
MERCHANT = "1344b5d4-0048-11e8-94db-005056a205be"
URLS = make_urls(ZARINPAL)
FAULTS = transport_faults()


def order(**fields):
    return make_order(**{"total": 250_000, "currency": "IRR", "phone": "09121234567", **fields})


def provider(**settings) -> Zarinpal:
    return load_provider(Zarinpal, {"merchant_id": MERCHANT, "timeout": 0.5, **settings}, ZARINPAL)


def on_fake():
    return provider_on_fake(Zarinpal, make_app, {"merchant_id": MERCHANT, "timeout": 0.5}, ZARINPAL)


async def started(zp, the_order=None):
    return await start_payment(zp, the_order or order(), URLS)


def test_keeps_the_provider_contract_and_checks_its_settings():
    check_payment_provider(Zarinpal, {"merchant_id": MERCHANT},
                           carts=[make_cart({"price": 50_000}, currency="IRR"), make_cart()])
    assert provider().base_url == "https://payment.zarinpal.com"
    assert provider(sandbox=True).base_url == "https://sandbox.zarinpal.com"
    with pytest.raises(ValidationError) as exc:
        Zarinpal.settings_schema().load({"sandbox": True})
    assert "merchant_id" in exc.value.messages


def test_supports_only_rials_and_tomans_above_the_minimum():
    zp = provider()
    assert zp.supports(make_cart({"price": 50_000}, currency="IRR"))
    assert zp.supports(make_cart({"price": 1_000}, currency="IRT"))
    assert not zp.supports(make_cart({"price": 50_000}, currency="EUR"))
    assert "at least" in zp.supports(make_cart({"price": 9_999}, currency="IRR")).reason
    # The minimum is on what the order charges: the goods plus shipping.
    assert zp.supports(replace(make_cart({"price": 9_000}, currency="IRR"), shipping_cost=1_000))
    assert not zp.supports(replace(make_cart({"price": 9_000}, currency="IRR"), shipping_cost=999))


@pytest.mark.gen_test(timeout=20)
async def test_paid_payment_is_verified_once_with_the_stored_amount():
    async with on_fake() as (zp, fake):
        start, paying = await started(zp)
        assert start.redirect_url == f"{fake.base_url}/pg/StartPay/{start.reference}"
        record = fake.state.records[start.reference]
        assert record["requested"] == (250_000, "IRR") and record["callback_url"] == URLS.return_url

        back = await shopper_choice(start.redirect_url, "approve")
        assert back.startswith(URLS.return_url + "&")
        assert query_params(back) == {"order": "ORD-2026-000001", "rt": "test-return-token",
                                      "Authority": start.reference, "Status": "OK"}

        check = await zp.verify_return(paying, query_params(back))
        assert (check.state, check.amount, check.currency) == (PaymentState.PAID, 250_000, "IRR")
        # A replayed return is answered 101 by the gateway: still paid, nothing captured twice.
        again = await zp.verify_return(paying, query_params(back))
        assert again.state is PaymentState.PAID and again.detail == "already verified"
        assert again.reference == check.reference


@pytest.mark.gen_test(timeout=20)
async def test_declined_cancelled_and_unpaid_payments_fail_whatever_the_query_says():
    async with on_fake() as (zp, _fake):
        for choice in ("decline", "cancel"):
            start, paying = await started(zp)
            back = await shopper_choice(start.redirect_url, choice)
            assert query_params(back)["Status"] == "NOK"
            assert (await zp.verify_return(paying, query_params(back))).state is PaymentState.FAILED
        # A forged "Status=OK" for a payment nobody made.
        start, paying = await started(zp)
        forged = {"Authority": start.reference, "Status": "OK"}
        assert (await zp.verify_return(paying, forged)).state is PaymentState.FAILED


@pytest.mark.gen_test(timeout=20)
async def test_hold_expiry_check_settles_a_shopper_who_paid_but_never_came_back():
    async with on_fake() as (zp, fake):
        start, paying = await started(zp)
        await shopper_choice(start.redirect_url, "approve")
        check = await zp.check(paying)
        assert check.state is PaymentState.PAID and fake.state.count("verify") == 1
        assert (await zp.check(order())).state is PaymentState.FAILED  # never started


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("faults", [Faults(amount_delta=-1000), Faults(currency="IRT"), Faults(decline=True)])
async def test_tampered_or_declined_payments_fail(faults):
    async with on_fake() as (zp, fake):
        fake.state.faults = faults
        start, paying = await started(zp)
        back = await shopper_choice(start.redirect_url, "approve")
        check = await zp.verify_return(paying, query_params(back))
        assert check.state is PaymentState.FAILED


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("operation", ["request", "verify"])
@pytest.mark.parametrize("fault", FAULTS)
async def test_gateway_faults_are_gateway_errors(operation, fault):
    async with on_fake() as (zp, fake):
        faults = FAULTS[fault]
        faults.only = frozenset({operation})
        fake.state.faults = faults
        if operation == "request":
            with pytest.raises(GatewayError):
                await zp.start(order(), URLS)
        else:
            start, paying = await started(zp)
            await shopper_choice(start.redirect_url, "approve")
            with pytest.raises(GatewayError):
                await zp.verify_return(paying, {})
            fake.state.faults = Faults()
            assert (await zp.verify_return(paying, {})).state is PaymentState.PAID


@pytest.mark.gen_test(timeout=20)
async def test_refused_connection_and_refused_request_are_gateway_errors():
    zp = provider(base_url=unused_url())
    await zp.startup()
    try:
        with pytest.raises(GatewayError, match="unreachable"):
            await zp.start(order(), URLS)
    finally:
        await zp.close()
    async with on_fake() as (zp, _fake):
        with pytest.raises(GatewayError, match="-9"):  # below Zarinpal's minimum
            await zp.start(order(total=500), URLS)


@pytest.mark.gen_test(timeout=20)
async def test_a_verify_refused_for_our_configuration_is_a_gateway_error_not_a_decline(caplog):
    # -53: the payment is not this merchant's (merchant_id changed since the payment started);
    # -54: Zarinpal knows no such authority (another host, sandbox vs live). Neither says the
    # shopper did not pay: on a return the order stays on hold, and an ERROR tells the admin.
    async with on_fake() as (zp, fake):
        start, paying = await started(zp)
        await shopper_choice(start.redirect_url, "approve")
        unknown = order(order_key="ORD-2026-000002",
                        payment={"authority": "A" + "0" * 35, "amount": 250_000, "currency": "IRR"})
        other = load_provider(Zarinpal, {"merchant_id": "another-merchant", "base_url": fake.base_url}, ZARINPAL)
        await other.startup()
        try:
            with pytest.raises(GatewayError, match="-53"):
                await other.verify_return(paying, {})
            with pytest.raises(GatewayError, match="-54"):
                await zp.verify_return(unknown, {})
            errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
            assert len(errors) == 2 and "-53" in errors[0] and "-54" in errors[1] and "merchant_id" in errors[0]
            assert paying.order_key in errors[0] and unknown.order_key in errors[1]
            # As the hold ends, an authority Zarinpal does not know can never be paid: failed,
            # said in an ERROR (a wrong host fails every order so). -53's payment exists and
            # may be paid to the right merchant: still a GatewayError, the hold stays.
            caplog.clear()
            check = await zp.check(unknown)
            assert check.state is PaymentState.FAILED and "-54" in check.detail
            with pytest.raises(GatewayError, match="-53"):
                await other.check(paying)
            errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
            assert len(errors) == 2 and unknown.order_key in errors[0] and "-54" in errors[0]
            assert paying.order_key in errors[1] and "-53" in errors[1]
        finally:
            await other.close()
        # Nothing was lost meanwhile: the payment is verified with the right settings.
        assert (await zp.check(paying)).state is PaymentState.PAID


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("code, state, at_expiry", [
    (-50, PaymentState.FAILED, PaymentState.FAILED), (-51, PaymentState.FAILED, PaymentState.FAILED),
    (-9, None, None), (-10, None, None), (-11, None, None), (-12, None, None), (-15, None, None),
    (-16, None, None), (-17, None, None), (-52, None, None), (-53, None, None),
    (-54, None, PaymentState.FAILED),  # no such authority: kept on a return, failed as the hold ends
    (-55, None, None), (-99, None, None)])
async def test_verify_codes_are_classified(code, state, at_expiry, caplog):
    zp = provider()

    async def post(endpoint, body):
        return {"data": [], "errors": {"code": code, "message": "as Zarinpal says"}}

    zp._post = post
    paying = order(payment={"authority": "A" + "1" * 35, "amount": 250_000, "currency": "IRR"})
    with caplog.at_level(logging.WARNING, logger="checkout_zarinpal"):
        for ask, expected in ((lambda: zp.verify_return(paying, {}), state), (lambda: zp.check(paying), at_expiry)):
            caplog.clear()
            if expected is None:
                with pytest.raises(GatewayError, match=str(code)):
                    await ask()
                assert any(str(code) in r.getMessage() and paying.order_key in r.getMessage()
                           for r in caplog.records if r.name == "checkout_zarinpal")
            else:
                assert (await ask()).state is expected
