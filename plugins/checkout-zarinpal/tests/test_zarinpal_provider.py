"""The Zarinpal provider against the local fake of Zarinpal v4, method by method."""

import contextlib
import socket
from urllib.parse import parse_qs, urlsplit

import pytest
from checkout_zarinpal import Zarinpal
from checkout_zarinpal.fake import make_app
from marshmallow import ValidationError

from checkout_server.fakegateway import Faults, run_fake, shopper_choice
from checkout_server.providers import (
    GatewayError,
    Method,
    OrderInfo,
    PaymentState,
    PaymentUrls,
)
from checkout_server.testing import check_payment_provider, make_cart

MERCHANT = "1344b5d4-0048-11e8-94db-005056a205be"
URLS = PaymentUrls(return_url="http://shop.test/api/shop/checkout/return/7?order=ORD-2026-000001",
                   notify_url="http://shop.test/api/shop/checkout/notify/7")


def order(total=250_000, currency="IRR", payment=None) -> OrderInfo:
    return OrderInfo(order_key="ORD-2026-000001", total=total, currency=currency, customer_id=1,
                     email="ada@example.com", phone="09121234567", name="Ada Lovelace",
                     description="Order ORD-2026-000001", payment=payment or {})


def provider(**settings) -> Zarinpal:
    values = {"merchant_id": MERCHANT, "timeout": 0.5, **settings}
    return Zarinpal(Method(7, "Zarinpal", "payment"), Zarinpal.settings_schema().load(values))


@contextlib.asynccontextmanager
async def on_fake(**settings):
    async with run_fake(make_app) as fake:
        zp = provider(base_url=fake.base_url, **settings)
        await zp.startup()
        try:
            yield zp, fake
        finally:
            await zp.close()


async def started(zp, the_order=None):
    the_order = the_order or order()
    start = await zp.start(the_order, URLS)
    return start, order(the_order.total, the_order.currency, payment=start.data)


def query(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


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


@pytest.mark.gen_test(timeout=20)
async def test_paid_payment_is_verified_once_with_the_stored_amount():
    async with on_fake() as (zp, fake):
        start, paying = await started(zp)
        assert start.redirect_url == f"{fake.base_url}/pg/StartPay/{start.reference}"
        record = fake.state.records[start.reference]
        assert record["requested"] == (250_000, "IRR") and record["callback_url"] == URLS.return_url

        back = await shopper_choice(start.redirect_url, "approve")
        assert back.startswith(URLS.return_url + "&")
        assert query(back) == {"order": "ORD-2026-000001", "Authority": start.reference, "Status": "OK"}

        check = await zp.verify_return(paying, query(back))
        assert (check.state, check.amount, check.currency) == (PaymentState.PAID, 250_000, "IRR")
        # A replayed return is answered 101 by the gateway: still paid, nothing captured twice.
        again = await zp.verify_return(paying, query(back))
        assert again.state is PaymentState.PAID and again.detail == "already verified"
        assert again.reference == check.reference


@pytest.mark.gen_test(timeout=20)
async def test_declined_cancelled_and_unpaid_payments_fail_whatever_the_query_says():
    async with on_fake() as (zp, _fake):
        for choice in ("decline", "cancel"):
            start, paying = await started(zp)
            back = await shopper_choice(start.redirect_url, choice)
            assert query(back)["Status"] == "NOK"
            assert (await zp.verify_return(paying, query(back))).state is PaymentState.FAILED
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
        check = await zp.verify_return(paying, query(back))
        assert check.state is PaymentState.FAILED


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("operation", ["request", "verify"])
@pytest.mark.parametrize("faults", [Faults(delay=2), Faults(status=502), Faults(malformed=True)],
                         ids=["timeout", "5xx", "malformed"])
async def test_gateway_faults_are_gateway_errors(operation, faults):
    async with on_fake() as (zp, fake):
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
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    zp = provider(base_url=closed)
    await zp.startup()
    try:
        with pytest.raises(GatewayError, match="unreachable"):
            await zp.start(order(), URLS)
    finally:
        await zp.close()
    async with on_fake() as (zp, _fake):
        with pytest.raises(GatewayError, match="-9"):  # below Zarinpal's minimum
            await zp.start(order(total=500), URLS)
