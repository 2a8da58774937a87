"""End to end: checkout, return, notifications and hold expiry through the real app and the fake Zarinpal.

Zarinpal sends no webhooks: returns and the hold-expiry sweep are the ways an order settles.
Every fault ends with a clear answer (503 at checkout, 302 with the result on return, 400 on a
notification) and with stock, order and cart consistent.
"""

from datetime import UTC, datetime, timedelta

import checkout_zarinpal
import pytest
from checkout_zarinpal.fake import make_app

from checkout_server.plugin import Faults, shopper_choice
from checkout_server.testing import GatewayScenarios, gateway_shop, query_params

ZARINPAL = 7
SETTINGS = {"merchant_id": "1344b5d4-0048-11e8-94db-005056a205be", "timeout": 0.5}


def zarinpal_shop(gateway_url: str | None = None):
    return gateway_shop(checkout_zarinpal, make_app, "zarinpal", SETTINGS, method_id=ZARINPAL,
                        currency="IRR", price=50_000, gateway_url=gateway_url)


def payments(fake) -> list[tuple[str, str]]:
    """(authority, our order key) of each payment the fake holds, oldest first."""
    return [(authority, query_params(record["callback_url"])["order"])
            for authority, record in fake.state.records.items()]


class TestZarinpalScenarios(GatewayScenarios):
    """The kit's gateway scenarios against the fake Zarinpal."""

    plugin = checkout_zarinpal
    make_app = make_app
    provider = "zarinpal"
    settings = SETTINGS
    method_id = ZARINPAL
    currency = "IRR"
    price = 50_000
    payment_page = "/pg/StartPay/A"
    expected_request = (100_500, "IRR")
    verify_operation = "verify"
    verifications_per_payment = 1
    amount_mismatch = Faults(amount_delta=-10_000)  # Zarinpal answers -50
    currency_mismatch = Faults(currency="IRT")  # Zarinpal answers -50
    return_fault = Faults(malformed=True, only={"verify"})

    def payments(self, fake):
        return payments(fake)

    def requested(self, fake, reference):
        return fake.state.records[reference]["requested"]

    def stranger_query(self, reference):
        return f"Authority={reference}&Status=NOK"


@pytest.mark.gen_test(timeout=30)
async def test_a_forged_ok_return_for_an_unpaid_payment_is_not_paid():
    async with zarinpal_shop() as gw:
        await gw.checkout()
        ((authority, key),) = payments(gw.fake)
        rt = query_params(gw.fake.state.records[authority]["callback_url"])["rt"]  # the shopper's own return
        r = await gw.shop.request("GET", f"/api/shop/checkout/return/{ZARINPAL}?order={key}&rt={rt}"
                                         f"&Authority={authority}&Status=OK")
        assert r.status == 302 and r.headers["Location"].endswith("payment=failed")
        await gw.assert_cancelled(key)


@pytest.mark.gen_test(timeout=30)
async def test_notifications_are_refused_zarinpal_sends_none():
    async with zarinpal_shop() as gw:
        await gw.checkout()
        ((authority, key),) = payments(gw.fake)
        r = await gw.shop.request("POST", f"/api/shop/checkout/notify/{ZARINPAL}",
                                  body={"Authority": authority, "Status": "OK", "order": key})
        assert r.status == 400 and "notification refused" in r.body["error"]
        await gw.assert_held(key)


@pytest.mark.gen_test(timeout=30)
async def test_a_verify_refused_for_a_configuration_problem_keeps_the_order_and_says_so(caplog):
    async with zarinpal_shop() as gw:
        r = await gw.checkout()
        back = await shopper_choice(r.body["next_step"], "approve")
        ((authority, key),) = payments(gw.fake)
        # The shopper paid; Zarinpal now says the payment is not this merchant's (-53): the
        # method's merchant_id is not the one the payment was made to. Not a declined payment.
        record = gw.fake.state.records[authority]
        merchant, record["merchant_id"] = record["merchant_id"], "another-merchant"
        r = await gw.back_to_shop(back)
        assert r.status == 302 and r.headers["Location"] == gw.result_url(key, "pending")
        report = await gw.shop.sweep(now=datetime.now(UTC) + timedelta(hours=1))
        assert report.deferred == [key] and report.cancelled == []
        await gw.assert_held(key)
        errors = [rec.getMessage() for rec in caplog.records if rec.levelname == "ERROR"]
        assert len(errors) == 2 and all(key in e and "-53" in e for e in errors), errors  # return, sweep
        # Configured right again: the next return (or sweep) settles it as paid.
        record["merchant_id"] = merchant
        r = await gw.back_to_shop(back)
        assert r.headers["Location"] == gw.result_url(key, "paid")
        await gw.assert_paid(key)


@pytest.mark.gen_test(timeout=30)
async def test_a_payment_zarinpal_does_not_know_is_kept_on_return_and_cancelled_at_hold_expiry(caplog):
    async with zarinpal_shop() as gw:
        r = await gw.checkout()
        back = await shopper_choice(r.body["next_step"], "cancel")
        ((authority, key),) = payments(gw.fake)
        # Zarinpal no longer knows the authority (-54: say the method was pointed at another host).
        del gw.fake.state.records[authority]
        r = await gw.back_to_shop(back)
        assert r.status == 302 and r.headers["Location"] == gw.result_url(key, "pending")
        await gw.assert_held(key)
        # The hold ends: an authority Zarinpal does not know can never be paid. Units back.
        report = await gw.shop.sweep(now=datetime.now(UTC) + timedelta(hours=1))
        assert report.cancelled == [key] and report.deferred == []
        await gw.assert_cancelled(key)
        errors = [rec.getMessage() for rec in caplog.records if rec.levelname == "ERROR"]
        assert len(errors) == 2 and all(key in e and "-54" in e for e in errors), errors  # return, sweep


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("price, offered", [(4_800, True), (4_500, False)])
async def test_the_minimum_applies_to_the_total_with_shipping(price, offered):
    # Two units and the courier's 500: 10,100 IRR reaches Zarinpal's 10,000 minimum, 9,500 does not.
    async with gateway_shop(checkout_zarinpal, make_app, "zarinpal", SETTINGS, method_id=ZARINPAL,
                            currency="IRR", price=price) as gw:
        r = await gw.checkout()
        if offered:
            assert r.status == 200 and r.body["next_step"].startswith(gw.fake.base_url), r
            ((authority, key),) = payments(gw.fake)
            assert gw.fake.state.records[authority]["requested"] == (2 * price + 500, "IRR")
            r = await gw.follow(r.body["next_step"], "approve")
            assert r.headers["Location"] == gw.result_url(key, "paid")
            await gw.assert_paid(key)
        else:
            assert r.status == 400 and "at least 10000 IRR" in r.body["error"], r
            assert "payment_method" in r.body["fields"] and gw.fake.state.count("request") == 0
            await gw.assert_no_order()
