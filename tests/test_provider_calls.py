"""payments/provider_calls.py: every provider call classified the same way, and logged once."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import ClassVar

import pytest

from checkout_server.config import MethodConfig
from checkout_server.methods.table import BoundMethod
from checkout_server.payments import provider_calls
from checkout_server.payments.provider_calls import (
    GatewayTrouble,
    ProviderFault,
    ProviderRefusal,
)
from checkout_server.plugin.providers import (
    GatewayError,
    Method,
    NotificationError,
    PaymentCheck,
    PaymentProvider,
    PaymentStart,
    PaymentState,
    PaymentUrls,
    RefundNotSupported,
    RefundRequest,
)
from checkout_server.storage.models import Order

ORDER = Order.from_document({
    "_id": "ORD-2026-000042", "customer": 7, "status": "HOLD", "stock": "held",
    "items": [{"product": 1, "name": "Mug", "quantity": 2, "unit_price": 500, "line_total": 1000}],
    "subtotal": 1000, "shipping_cost": 0, "total": 1000, "currency": "EUR", "payment_method": 3,
    "shipping_method": 1, "billing": {"name": "Ada", "email": "ada@example.com", "phone": None},
    "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    "payment": {"provider": "scripted", "flow": "redirect", "title": "Card", "attempt": "a1",
                "reference": "pay_1", "next_step": "https://gw.test/pay_1", "data": {"k": "v"}},
})
URLS = PaymentUrls("http://shop.test/return/3?order=ORD-2026-000042&rt=x", "http://shop.test/notify/3")


class Scripted(PaymentProvider):
    """Answers, or raises, whatever the test sets in `ANSWER`."""

    name = "scripted"
    flow = "redirect"
    ANSWER: ClassVar[object] = None
    SEEN: ClassVar[list] = []

    async def _answer(self, *args):
        Scripted.SEEN.append(args)
        if isinstance(Scripted.ANSWER, BaseException):
            raise Scripted.ANSWER
        if Scripted.ANSWER == "hang":
            await asyncio.sleep(3600)
        return Scripted.ANSWER

    async def start(self, order, urls):
        return await self._answer(order, urls)

    async def check(self, order):
        return await self._answer(order)

    async def verify_return(self, order, params):
        return await self._answer(order, params)

    async def parse_notification(self, headers, body):
        return await self._answer(headers, body)

    async def refund(self, order, request):
        return await self._answer(order, request)


METHOD = BoundMethod(MethodConfig("payment", 3, "scripted", "Card", True, {}),
                     Scripted(Method(3, "Card", "payment"), {}))


@pytest.fixture(autouse=True)
def script():
    Scripted.SEEN = []
    yield
    Scripted.ANSWER = None


def run(coro):
    return asyncio.run(coro)


def test_the_provider_sees_the_order_as_order_info():
    Scripted.ANSWER = PaymentCheck(PaymentState.PAID, amount=1000, currency="EUR")
    assert run(provider_calls.check(METHOD, ORDER)).state is PaymentState.PAID
    [(info,)] = Scripted.SEEN
    assert (info.order_key, info.total, info.currency, info.email) == ("ORD-2026-000042", 1000, "EUR",
                                                                         "ada@example.com")
    assert info.payment == {"k": "v"} and info.attempt_id == "a1" and info.description.endswith("2 items")


@pytest.mark.parametrize("raised, kind", [
    (GatewayError("503 from the gateway"), GatewayTrouble),
    (TimeoutError(), GatewayTrouble),
    (NotificationError("bad signature"), ProviderRefusal),
    (RefundNotSupported("not here"), ProviderRefusal),
    (KeyError("oops"), ProviderFault),
])
def test_what_a_provider_raises_is_classified_and_logged_naming_method_provider_and_order(raised, kind, caplog):
    Scripted.ANSWER = raised
    with caplog.at_level(logging.WARNING, "checkout_server.payments.provider_calls"), \
            pytest.raises(kind) as caught:
        run(provider_calls.check(METHOD, ORDER))
    assert caught.value.cause is raised and caught.value.operation == "check"
    [record] = caplog.records
    assert record.getMessage().startswith(
        f"payment method 3 (scripted): check() for order ORD-2026-000042: {kind.kind}")
    assert record.levelno == (logging.ERROR if kind is ProviderFault else logging.WARNING)


@pytest.mark.parametrize("call, answer", [
    (lambda: provider_calls.start(METHOD, ORDER, URLS), PaymentCheck(PaymentState.PAID)),
    (lambda: provider_calls.start(METHOD, ORDER, URLS), PaymentStart()),  # a redirect without redirect_url
    (lambda: provider_calls.check(METHOD, ORDER), {"state": "paid"}),
    (lambda: provider_calls.verify_return(METHOD, ORDER, {}), None),
    (lambda: provider_calls.parse_notification(METHOD, {}, b""), PaymentCheck(PaymentState.PAID)),
    (lambda: provider_calls.refund(METHOD, ORDER, RefundRequest(100, "EUR", "r1")), "refunded"),
])
def test_an_answer_of_the_wrong_type_is_a_provider_fault(call, answer, caplog):
    Scripted.ANSWER = answer
    with caplog.at_level(logging.ERROR, "checkout_server.payments.provider_calls"), pytest.raises(ProviderFault):
        run(call())
    assert "payment method 3 (scripted)" in caplog.text and "provider bug" in caplog.text


def test_a_call_is_cut_off_at_its_deadline():
    Scripted.ANSWER = "hang"
    with pytest.raises(GatewayTrouble, match="no answer within 0.05 s"):
        run(provider_calls.start(METHOD, ORDER, URLS, timeout=0.05))


def test_no_deadline_is_longer_than_the_policys():
    assert provider_calls.CALL_SECONDS == 60.0
    Scripted.ANSWER = PaymentStart(redirect_url="https://gw.test/p")
    assert run(provider_calls.start(METHOD, ORDER, URLS, timeout=10**6)).redirect_url == "https://gw.test/p"
