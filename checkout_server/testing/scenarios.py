"""The end-to-end scenarios every payment gateway plugin runs against its own fake gateway.

Written once, run by each gateway plugin: subclass `GatewayScenarios` (or
`WebhookGatewayScenarios` when the gateway sends notifications) in a test module, as a
class whose name starts with `Test`, and describe the gateway; pytest runs every scenario
(checkout, return, replay, faults at each step, hold expiry, races, strangers) through the
real app and the plugin's fake, checking stock, order and cart after each step:

    class TestZarinpalScenarios(GatewayScenarios):
        plugin = checkout_zarinpal
        make_app = make_app                       # the plugin's fake gateway
        provider = "zarinpal"
        settings = {"merchant_id": "...", "timeout": 0.5}
        method_id, currency, price = 7, "IRR", 50_000
        payment_page = "/pg/StartPay/A"           # next_step starts with the fake's URL and this
        expected_request = (100_500, "IRR")       # what `requested` reads for 2 x price + 500 shipping
        verify_operation = "verify"               # the fake's operation that verifies a payment
        verifications_per_payment = 1
        amount_mismatch = Faults(amount_delta=-10_000)
        currency_mismatch = Faults(currency="IRT")
        return_fault = Faults(malformed=True, only={"verify"})

        def payments(self, fake): ...             # [(gateway reference, order key)], oldest first
        def requested(self, fake, reference): ...
        def stranger_query(self, reference): ...  # a return's query a stranger could forge

The shop has one product at `price` (5 on the shelf, 2 in the cart), ships with the kit's
courier for 500, and pays with the one method `method_id` on the fake.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, ClassVar

import pytest

from checkout_server import clock
from checkout_server.handlers import reverse_url
from checkout_server.payments.return_tokens import RETURN_ROUTE
from checkout_server.plugin.fake_gateway import Faults, shopper_choice, transport_faults
from checkout_server.testing.gateways import (
    SHOP_URL,
    assert_consistent,
    gateway_shop,
    unused_url,
)

FAULTS = transport_faults()
# Past any hold a scenario makes: hold expiry runs "now" plus this.
AFTER_THE_HOLD = timedelta(hours=1)
UNPAID_OR_MISMATCHED = {  # case: the shopper's choice on the fake's page
    "amount": "approve", "currency": "approve", "declined": "decline", "cancelled": "cancel"}


class GatewayScenarios:
    """Scenarios for a redirect payment gateway; set the attributes, implement the three methods."""

    plugin: ClassVar[Any]
    make_app: ClassVar[Callable]
    provider: ClassVar[str]
    settings: ClassVar[Mapping[str, Any]]
    method_id: ClassVar[int] = 1
    currency: ClassVar[str] = "EUR"
    price: ClassVar[int] = 2_000
    payment_page: ClassVar[str]
    expected_request: ClassVar[Any]
    verify_operation: ClassVar[str]
    # How many verifying calls one paid payment takes at the gateway; None: any number.
    verifications_per_payment: ClassVar[int | None] = None
    amount_mismatch: ClassVar[Faults]
    currency_mismatch: ClassVar[Faults]
    return_fault: ClassVar[Faults]

    # -- what the gateway plugin describes
    def payments(self, fake) -> list[tuple[str, str]]:
        """(the gateway's reference, our order key) of each payment the fake holds, oldest first."""
        raise NotImplementedError

    def requested(self, fake, reference: str) -> Any:
        """What the provider asked the gateway to collect for `reference` (compared with `expected_request`)."""
        raise NotImplementedError

    def stranger_query(self, reference: str) -> str:
        """The gateway's own query parameters on a return (after `order=`), as a stranger would forge them."""
        raise NotImplementedError

    def assert_abandoned_payment_ended(self, fake, reference: str) -> None:
        """After hold expiry cancelled its order: the gateway's payment can no longer be paid."""

    def assert_payment_untouched(self, fake, reference: str) -> None:
        """After a stranger's return was refused: nothing changed at the gateway."""

    def racing_settlements(self, gw, back: str) -> list:
        """What races the shopper's two returns: a third return and hold expiry."""
        return [gw.back_to_shop(back), gw.shop.sweep(now=clock.utcnow() + AFTER_THE_HOLD)]

    def check_racing_answers(self, answers: list) -> None:
        assert answers[0].status == 302 and answers[0].headers["Location"].endswith("payment=paid")

    def assert_settled_once_at_gateway(self, fake, reference: str) -> None:
        """After the race: the gateway took the money once."""

    # -- the shop
    def shop(self, gateway_url: str | None = None):
        """`gateway_shop` with this gateway's method on its fake (or on `gateway_url`)."""
        return gateway_shop(self.plugin, type(self).make_app, self.provider, self.settings,
                            method_id=self.method_id, currency=self.currency, price=self.price,
                            gateway_url=gateway_url)

    # -- the scenarios
    @pytest.mark.gen_test(timeout=30)
    async def test_paid_checkout_settles_once_and_a_replayed_return_changes_nothing(self):
        async with self.shop() as gw:
            r = await gw.checkout()
            assert r.status == 200 and r.body["next_step"].startswith(f"{gw.fake.base_url}{self.payment_page}"), r
            ((reference, key),) = self.payments(gw.fake)
            assert self.requested(gw.fake, reference) == self.expected_request

            assert await gw.last_order_key() == key
            back = await shopper_choice(r.body["next_step"], "approve")
            r = await gw.back_to_shop(back)
            assert r.status == 302 and r.headers["Location"] == gw.result_url(key, "paid")
            await gw.assert_paid(key)
            verified = gw.fake.state.count(self.verify_operation)
            assert self.verifications_per_payment in (None, verified), verified
            r = await gw.back_to_shop(back)
            assert r.headers["Location"].endswith("payment=paid")
            assert gw.fake.state.count(self.verify_operation) == verified
            await gw.assert_paid(key)

    @pytest.mark.gen_test(timeout=30)
    @pytest.mark.parametrize("fault", [*FAULTS, "refused"])
    async def test_a_failing_gateway_at_checkout_is_a_503_that_loses_nothing(self, fault):
        async with self.shop(unused_url() if fault == "refused" else None) as gw:
            if fault != "refused":
                gw.fake.state.faults = FAULTS[fault]
            await gw.assert_checkout_unavailable()

    @pytest.mark.gen_test(timeout=30)
    @pytest.mark.parametrize("case", UNPAID_OR_MISMATCHED)
    async def test_unpaid_or_mismatched_payments_cancel_the_order_and_give_everything_back(self, case):
        faults = {"amount": self.amount_mismatch, "currency": self.currency_mismatch}.get(case, Faults())
        async with self.shop() as gw:
            gw.fake.state.faults = faults
            r = await gw.checkout()
            ((_, key),) = self.payments(gw.fake)
            r = await gw.follow(r.body["next_step"], UNPAID_OR_MISMATCHED[case])
            assert r.status == 302 and r.headers["Location"] == gw.result_url(key, "failed")
            await gw.assert_cancelled(key)

    @pytest.mark.gen_test(timeout=30)
    async def test_a_gateway_fault_on_return_leaves_the_order_on_hold_until_it_can_be_verified(self):
        async with self.shop() as gw:
            r = await gw.checkout()
            back = await shopper_choice(r.body["next_step"], "approve")
            ((_, key),) = self.payments(gw.fake)
            gw.fake.state.faults = self.return_fault
            r = await gw.back_to_shop(back)
            assert r.status == 302 and r.headers["Location"].endswith("payment=pending")
            await gw.assert_held(key)
            gw.fake.state.faults = Faults()
            r = await gw.back_to_shop(back)
            assert r.headers["Location"].endswith("payment=paid")
            await gw.assert_paid(key)

    @pytest.mark.gen_test(timeout=30)
    async def test_hold_expiry_asks_the_gateway_first(self):
        async with self.shop() as gw:
            later = clock.utcnow() + AFTER_THE_HOLD
            await gw.checkout()  # never paid
            # Paid at the gateway, browser closed before coming back.
            await gw.shop.storage.customers.add_to_cart(gw.customer.id, gw.product_id, 1)
            r = await gw.checkout()
            await shopper_choice(r.body["next_step"], "approve")
            (abandoned_reference, abandoned), (_, paid) = self.payments(gw.fake)
            report = await gw.shop.sweep(now=later)
            assert report.cancelled == [abandoned] and report.paid == [paid]
            self.assert_abandoned_payment_ended(gw.fake, abandoned_reference)
            for key, status in ((abandoned, "CANCELLED"), (paid, "PROCESSING")):
                await assert_consistent(gw.shop, key, customer=gw.customer, status=status,
                                        stock={gw.product_id: 2}, cart={})

    @pytest.mark.gen_test(timeout=30)
    async def test_a_stranger_cannot_cancel_a_pending_order_and_the_shopper_still_pays(self):
        async with self.shop() as gw:
            r = await gw.checkout()
            key = await gw.last_order_key()
            ((reference, _),) = self.payments(gw.fake)
            verified = gw.fake.state.count(self.verify_operation)
            # Order keys are sequential: a stranger tries the return the gateway would send,
            # without the shopper's return token.
            stranger = await gw.back_to_shop(f"{SHOP_URL}{reverse_url(RETURN_ROUTE, self.method_id)}"
                                             f"?order={key}&{self.stranger_query(reference)}")
            assert stranger.status == 404 and "Location" not in stranger.headers
            assert gw.fake.state.count(self.verify_operation) == verified
            self.assert_payment_untouched(gw.fake, reference)
            await gw.assert_held(key)
            r = await gw.follow(r.body["next_step"], "approve")
            assert r.headers["Location"] == gw.result_url(key, "paid")
            await gw.assert_paid(key)

    @pytest.mark.gen_test(timeout=30)
    async def test_returns_racing_other_settlements_settle_the_order_once(self):
        async with self.shop() as gw:
            r = await gw.checkout()
            back = await shopper_choice(r.body["next_step"], "approve")
            ((reference, key),) = self.payments(gw.fake)
            answers = await asyncio.gather(gw.back_to_shop(back), gw.back_to_shop(back),
                                           *self.racing_settlements(gw, back))
            assert all(a.status == 302 and a.headers["Location"].endswith("payment=paid") for a in answers[:2])
            self.check_racing_answers(answers[2:])
            await gw.assert_paid(key)
            self.assert_settled_once_at_gateway(gw.fake, reference)


class WebhookGatewayScenarios(GatewayScenarios):
    """Scenarios for a gateway that also notifies: implement `paid_notification` too."""

    def paid_notification(self, fake, reference: str) -> tuple[Mapping[str, str], bytes]:
        """(headers, body) of the signed notification the gateway sends when `reference` is paid."""
        raise NotImplementedError

    def racing_settlements(self, gw, back: str) -> list:
        """What races the shopper's two returns: the gateway's notification, delivered twice."""
        ((reference, _),) = self.payments(gw.fake)
        headers, body = self.paid_notification(gw.fake, reference)
        return [gw.notify(headers, body), gw.notify(headers, body)]

    def check_racing_answers(self, answers: list) -> None:
        assert [a.status for a in answers] == [200, 200], answers

    @pytest.mark.gen_test(timeout=30)
    async def test_a_notification_before_payment_leaves_the_shopper_free_to_pay(self):
        async with self.shop() as gw:
            r = await gw.checkout()
            ((reference, key),) = self.payments(gw.fake)
            early = await gw.notify(*self.paid_notification(gw.fake, reference))
            assert early.status == 200 and early.body["result"] == "pending"
            await gw.assert_held(key)
            r = await gw.follow(r.body["next_step"], "approve")  # the payment was not ended
            assert r.headers["Location"] == gw.result_url(key, "paid")
            await gw.assert_paid(key)
