"""Admin cancel and refund, against an in-test gateway whose refunds the test controls."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta

import checkout_fixtures as kit
import pytest
from invariants import assert_stock_invariant

from checkout_server.payments.sweeper import sweep
from checkout_server.plugin.hookspecs import hookimpl
from checkout_server.plugin.providers import (
    GatewayError,
    Notification,
    NotificationError,
    PaymentCheck,
    PaymentProvider,
    PaymentStart,
    PaymentState,
    Refund,
    RefundState,
)
from checkout_server.testing import TestShop


class Gateway:
    """What the in-test gateway knows: payments by order key, refunds by idempotency key."""

    def __init__(self):
        self.payments: dict[str, PaymentCheck] = {}
        self.refunds: dict[str, Refund] = {}  # idempotency key -> the refund made
        self.mode = "ok"  # ok | pending | refuse | down | lost (refunds, then times out)
        self.closed: list[str] = []
        self.calls: list[str] = []

    def refunded(self, order_key: str) -> int:
        return sum(r.amount for key, r in self.refunds.items()
                   if key.startswith(order_key) and r.state is RefundState.SUCCEEDED)


GATEWAY = Gateway()


class RefundingPay(PaymentProvider):
    """A redirect gateway that refunds, keyed by the attempt id as a real one is."""

    name = "test_refunding"
    flow = "redirect"

    async def start(self, order, urls):
        return PaymentStart(redirect_url=f"https://gw.test/pay/{order.order_key}", reference=f"pay-{order.order_key}",
                            data={"return_url": urls.return_url})

    async def verify_return(self, order, params):
        return GATEWAY.payments.get(order.order_key, PaymentCheck(PaymentState.PENDING))

    async def check(self, order):
        return GATEWAY.payments.get(order.order_key, PaymentCheck(PaymentState.FAILED))

    async def cancel_payment(self, order):
        GATEWAY.calls.append(f"cancel {order.order_key}")
        if GATEWAY.mode == "down":
            raise GatewayError("gateway timed out")
        check = GATEWAY.payments.get(order.order_key)
        if check is None:
            GATEWAY.closed.append(order.order_key)
            return PaymentCheck(PaymentState.FAILED, detail="session expired")
        return check

    async def refund(self, order, request):
        GATEWAY.calls.append(f"refund {order.order_key} {request.amount}")
        key = f"{order.order_key}-{request.attempt_id}"
        if GATEWAY.mode == "down":
            raise GatewayError("gateway timed out")
        if GATEWAY.mode == "refuse":
            return Refund(RefundState.FAILED, request.amount, request.currency, detail="charge disputed")
        await asyncio.sleep(0)
        if key not in GATEWAY.refunds:  # the gateway's idempotency: one refund per key
            state = RefundState.PENDING if GATEWAY.mode == "pending" else RefundState.SUCCEEDED
            GATEWAY.refunds[key] = Refund(state, request.amount, request.currency, f"re_{len(GATEWAY.refunds) + 1}",
                                          attempt_id=request.attempt_id)
        if GATEWAY.mode == "lost":
            raise GatewayError("gateway timed out")  # refunded, but the answer never came
        return GATEWAY.refunds[key]

    async def check_refund(self, order, refund):
        found = next(r for r in GATEWAY.refunds.values() if r.reference == refund.reference)
        return found

    async def parse_notification(self, headers, body):
        if headers.get("X-Test-Signature") != "valid":
            raise NotificationError("bad signature")
        data = json.loads(body)
        refunds = tuple(Refund(RefundState(r["state"]), r["amount"], "EUR", r["reference"]) for r in data["refunds"])
        return Notification(order_key=data["order"], event_id=data["event"], refunds=refunds)


@hookimpl
def register_payment_providers(register):
    register(RefundingPay)


COD, GW = kit.DIRECT, 2
CONFIG = {**kit.CONFIG, "payment_methods": [
    {"id": COD, "provider": "test_direct", "title": "Pay on delivery"},
    {"id": GW, "provider": "test_refunding", "title": "Refunding gateway"}]}


@pytest.fixture(autouse=True)
def fresh_gateway():
    global GATEWAY
    GATEWAY = Gateway()
    yield


def shop() -> TestShop:
    return TestShop(config=CONFIG, plugins=[kit, sys.modules[__name__]])


async def held_order(s, stock=5, quantity=2):
    p = await s.product(price=1000, stock=stock)
    c = await s.customer(cart={p["_id"]: quantity})
    r = await c.checkout(GW, kit.FLAT)
    assert r.status == 200, r
    key = r.body["next_step"].rsplit("/", 1)[1]
    return p, c, key


async def paid_order(s, stock=5, quantity=2):
    p, c, key = await held_order(s, stock, quantity)
    GATEWAY.payments[key] = PaymentCheck(PaymentState.PAID, amount=2500, currency="EUR", reference=f"pay-{key}")
    r = await s.request("GET", await kit.return_path(s.storage, key, GW))
    assert r.status == 302 and r.headers["Location"].endswith("payment=paid"), r
    return p, c, key


async def refund(s, key, body=None):
    return await s.admin("POST", f"/api/admin/orders/{key}/refund", body)


async def cancel(s, key, body=None):
    return await s.admin("POST", f"/api/admin/orders/{key}/cancel", body)


def statuses(order) -> list[tuple[int, str]]:
    return [(r["amount"], r["status"]) for r in order["payment"]["refunds"]]


@pytest.mark.gen_test
async def test_partial_refunds_are_recorded_and_never_exceed_what_was_captured():
    async with shop() as s:
        _p, _c, key = await paid_order(s)
        r = await refund(s, key, {"amount": 1000, "reason": "one mug broken"})
        assert r.status == 200, r
        (entry,) = r.body["payment"]["refunds"]
        assert (entry["amount"], entry["status"], entry["currency"], entry["by"]) == (1000, "succeeded", "EUR", "admin")
        assert entry["reference"] == "re_1" and entry["reason"] == "one mug broken" and entry["requested_at"]
        assert r.body["refunds"] == {"captured": 2500, "refunded": 1000, "pending": 0, "refundable": 1500,
                                     "currency": "EUR"}
        assert r.body["status"] == "PROCESSING"  # a refund alone does not cancel
        r = await refund(s, key, {"amount": 1501})
        assert r.status == 400 and list(r.body["fields"]) == ["amount"] and "1500" in r.body["error"]
        r = await refund(s, key)  # default: all that is left
        assert r.status == 200 and statuses(r.body) == [(1000, "succeeded"), (1500, "succeeded")]
        r = await refund(s, key, {"amount": 1})
        assert r.status == 409 and "nothing left" in r.body["error"]
        assert GATEWAY.refunded(key) == 2500


@pytest.mark.gen_test
async def test_a_refused_refund_is_400_recorded_as_failed_and_refunds_nothing():
    async with shop() as s:
        _p, _c, key = await paid_order(s)
        GATEWAY.mode = "refuse"
        r = await refund(s, key, {"amount": 500})
        assert r.status == 400 and "refused" in r.body["error"] and "charge disputed" in r.body["error"]
        order = (await s.admin("GET", f"/api/admin/orders/{key}")).body
        assert statuses(order) == [(500, "failed")] and order["refunds"]["refundable"] == 2500


@pytest.mark.gen_test
async def test_gateway_down_is_503_and_nothing_is_recorded_as_refunded():
    async with shop() as s:
        _p, _c, key = await paid_order(s)
        GATEWAY.mode = "down"
        r = await refund(s, key, {"amount": 700})
        assert r.status == 503 and "nothing is recorded as refunded" in r.body["error"]
        order = (await s.admin("GET", f"/api/admin/orders/{key}")).body
        assert order["refunds"]["refunded"] == 0 and statuses(order) == [(700, "requested")]
        assert GATEWAY.refunded(key) == 0


@pytest.mark.gen_test
async def test_the_repeat_of_a_refund_that_timed_out_refunds_once():
    async with shop() as s:
        _p, _c, key = await paid_order(s)
        GATEWAY.mode = "lost"  # the gateway refunds, the answer is lost
        r = await refund(s, key, {"amount": 700})
        assert r.status == 503
        GATEWAY.mode = "ok"
        r = await refund(s, key, {"amount": 700})  # the admin repeats it
        assert r.status == 200 and statuses(r.body) == [(700, "succeeded")]
        assert GATEWAY.refunded(key) == 700 and len(GATEWAY.refunds) == 1
        assert r.body["payment"]["refunds"][0]["reference"] == "re_1"


@pytest.mark.gen_test
async def test_a_method_that_cannot_refund_is_400_and_a_manual_refund_is_recorded_with_its_note():
    async with shop() as s:
        p = await s.product(price=1000, stock=5)
        c = await s.customer(cart={p["_id"]: 1})
        key = (await c.checkout(COD, kit.FLAT)).body["order_key"]
        r = await refund(s, key, {"amount": 500})
        assert r.status == 400 and "cannot refund through its gateway" in r.body["error"]
        assert '"manual": true' in r.body["error"]
        r = await refund(s, key, {"manual": True})
        assert r.status == 400 and list(r.body["fields"]) == ["note"]
        r = await refund(s, key, {"amount": 500, "manual": True, "note": "cash back at the counter"})
        assert r.status == 200
        (entry,) = r.body["payment"]["refunds"]
        assert (entry["amount"], entry["status"], entry["manual"], entry["note"]) == (
            500, "succeeded", True, "cash back at the counter")
        assert r.body["refunds"]["refundable"] == 1000


@pytest.mark.gen_test
@pytest.mark.parametrize("body, field", [
    ({"amount": 0}, "amount"), ({"amount": "5"}, "amount"), ({"amount": True}, "amount"),
    ({"amount": 1.5}, "amount"), ({"note": "x"}, "note"), ({"other": 1}, "other"),
])
async def test_a_bad_refund_body_is_400_naming_the_field(body, field):
    async with shop() as s:
        _p, _c, key = await paid_order(s)
        r = await refund(s, key, body)
        assert r.status == 400 and field in r.body["fields"], r
        assert GATEWAY.refunds == {}


@pytest.mark.gen_test
async def test_refund_and_cancel_need_the_admin_and_an_order():
    async with shop() as s:
        _p, c, key = await paid_order(s)
        for action in ("refund", "cancel"):
            assert (await c.request("POST", f"/api/admin/orders/{key}/{action}", {})).status == 403
            assert (await s.request("POST", f"/api/admin/orders/{key}/{action}", {})).status == 401
            assert (await s.admin("POST", f"/api/admin/orders/ORD-2026-999999/{action}", {})).status == 404
        _p, _c, hold = await held_order(s)
        r = await refund(s, hold)
        assert r.status == 409 and "cancel it instead" in r.body["error"]


@pytest.mark.gen_test
async def test_cancel_of_an_unpaid_hold_closes_the_payment_and_gives_the_units_back():
    async with shop() as s:
        p, _c, key = await held_order(s)
        r = await cancel(s, key, {"reason": "customer called"})
        assert r.status == 200 and r.body["status"] == "CANCELLED", r
        assert GATEWAY.closed == [key]  # the shopper can no longer pay it
        assert r.body["history"][-1]["by"] == "admin" and "customer called" in r.body["history"][-1]["reason"]
        assert (await s.storage.products.get(p["_id"]))["stock"] == 5
        await assert_stock_invariant(s.storage)
        again = await cancel(s, key)
        history = [(h["status"], h["reason"], h["by"]) for h in again.body["history"]]
        assert again.status == 200 and history == [(h["status"], h["reason"], h["by"]) for h in r.body["history"]]


@pytest.mark.gen_test
async def test_cancel_of_a_hold_the_gateway_reports_paid_settles_it_and_is_409():
    async with shop() as s:
        p, _c, key = await held_order(s)
        GATEWAY.payments[key] = PaymentCheck(PaymentState.PAID, amount=2500, currency="EUR")
        r = await cancel(s, key)
        assert r.status == 409 and "paid now" in r.body["error"]
        order = await s.storage.orders.get(key)
        assert order["status"] == "PROCESSING" and (await s.storage.products.get(p["_id"]))["stock"] == 3
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_cancel_of_a_hold_with_the_gateway_down_is_503_and_changes_nothing():
    async with shop() as s:
        _p, _c, key = await held_order(s)
        GATEWAY.mode = "down"
        r = await cancel(s, key)
        assert r.status == 503 and (await s.storage.orders.get(key))["status"] == "HOLD"


@pytest.mark.gen_test
@pytest.mark.parametrize("restock", [True, False])
async def test_cancel_of_a_paid_order_refunds_it_all_and_takes_the_units_back(restock):
    async with shop() as s:
        p, _c, key = await paid_order(s)
        await refund(s, key, {"amount": 400})
        r = await cancel(s, key, {"reason": "out of stock at the warehouse", "restock": restock})
        assert r.status == 200 and r.body["status"] == "CANCELLED", r
        assert statuses(r.body) == [(400, "succeeded"), (2100, "succeeded")]
        assert GATEWAY.refunded(key) == 2500
        last = r.body["history"][-1]
        assert last["by"] == "admin" and "refunded 2500" in last["reason"]
        product = await s.storage.products.get(p["_id"])
        # Restocked: back on the shelf; written off: gone from the ledger too.
        assert (product["stock"], product["received"]) == ((5, 5) if restock else (3, 3))
        assert r.body["stock"] == "returned" and not product.get("returned")
        await assert_stock_invariant(s.storage)
        again = await cancel(s, key)
        assert again.status == 200 and len(GATEWAY.refunds) == 2
        assert (await s.storage.products.get(p["_id"]))["stock"] == product["stock"]


@pytest.mark.gen_test
async def test_cancel_of_a_paid_order_whose_refund_fails_leaves_it_as_it_was():
    async with shop() as s:
        p, _c, key = await paid_order(s)
        for mode, status in (("down", 503), ("refuse", 400)):
            GATEWAY.mode = mode
            r = await cancel(s, key)
            assert r.status == status, r
            order = await s.storage.orders.get(key)
            assert order["status"] == "PROCESSING" and (await s.storage.products.get(p["_id"]))["stock"] == 3
        GATEWAY.mode = "ok"
        r = await cancel(s, key)  # the unanswered attempt is sent again first: refunded once
        assert r.status == 200 and GATEWAY.refunded(key) == 2500


@pytest.mark.gen_test
async def test_cancel_without_refund_and_of_a_method_that_cannot_refund():
    async with shop() as s:
        p = await s.product(price=1000, stock=5)
        c = await s.customer(cart={p["_id"]: 1})
        key = (await c.checkout(COD, kit.FLAT)).body["order_key"]
        r = await cancel(s, key)
        assert r.status == 400 and "cannot refund" in r.body["error"]
        r = await cancel(s, key, {"refund": False, "reason": "not collected"})
        assert r.status == 200 and r.body["status"] == "CANCELLED" and "no refund" in r.body["history"][-1]["reason"]
        assert (await s.storage.products.get(p["_id"]))["stock"] == 5
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test(timeout=30)
async def test_concurrent_cancels_refund_once_and_take_the_units_back_once():
    async with shop() as s:
        p, _c, key = await paid_order(s)
        answers = await asyncio.gather(*(cancel(s, key) for _ in range(6)))
        assert {a.status for a in answers} <= {200, 409} and 200 in {a.status for a in answers}, answers
        for a in answers:
            if a.status == 409:
                assert "try again" in a.body["error"]
        assert GATEWAY.refunded(key) == 2500 and len(GATEWAY.refunds) == 1
        order = await s.storage.orders.get(key)
        assert order["status"] == "CANCELLED" and [h["status"] for h in order["history"]] == [
            "HOLD", "PROCESSING", "CANCELLED"]
        assert (await s.storage.products.get(p["_id"]))["stock"] == 5
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test(timeout=30)
async def test_a_cancel_racing_the_shoppers_return_settles_the_order_once():
    async with shop() as s:
        p, _c, key = await held_order(s)
        path = await kit.return_path(s.storage, key, GW)
        GATEWAY.payments[key] = PaymentCheck(PaymentState.PAID, amount=2500, currency="EUR")
        answers = await asyncio.gather(cancel(s, key), s.request("GET", path), s.request("GET", path))
        order = await s.storage.orders.get(key)
        history = [h["status"] for h in order["history"]]
        assert all(a.headers["Location"].endswith("payment=paid") for a in answers[1:])
        if answers[0].status == 409:
            # The cancel asked the gateway while the order was on HOLD: paid, settled once, refused.
            assert "paid now" in answers[0].body["error"]
            assert order["status"] == "PROCESSING" and history == ["HOLD", "PROCESSING"]
            assert (await s.storage.products.get(p["_id"]))["stock"] == 3
        else:
            # The cancel came after a return had settled it: a paid order cancelled, refunded in full.
            assert answers[0].status == 200 and GATEWAY.refunded(key) == 2500
            assert order["status"] == "CANCELLED" and history == ["HOLD", "PROCESSING", "CANCELLED"]
            assert (await s.storage.products.get(p["_id"]))["stock"] == 5
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_refund_notifications_are_recorded_once():
    async with shop() as s:
        _p, _c, key = await paid_order(s)
        GATEWAY.mode = "pending"
        r = await refund(s, key, {"amount": 1000})
        assert statuses(r.body) == [(1000, "pending")] and r.body["payment"]["refund_pending"] is True
        body = json.dumps({"order": key, "event": "evt-1", "refunds": [
            {"state": "succeeded", "amount": 1000, "reference": "re_1"},
            {"state": "succeeded", "amount": 300, "reference": "re_dashboard"}]}).encode()
        for _ in range(2):
            r = await s.request("POST", f"/api/shop/checkout/notify/{GW}", raw_body=body,
                                headers={"X-Test-Signature": "valid"})
            assert r.status == 200, r
        order = (await s.admin("GET", f"/api/admin/orders/{key}")).body
        assert statuses(order) == [(1000, "succeeded"), (300, "succeeded")]
        assert order["payment"]["refunds"][1]["by"] == "gateway" and order["payment"]["refund_pending"] is False
        # The same refunds in a new event change nothing either.
        again = body.replace(b"evt-1", b"evt-2")
        r = await s.request("POST", f"/api/shop/checkout/notify/{GW}", raw_body=again,
                            headers={"X-Test-Signature": "valid"})
        assert r.status == 200
        assert (await s.storage.orders.get(key))["payment"]["refunds"] == (await s.storage.orders.get(key))[
            "payment"]["refunds"] and len(statuses(await s.storage.orders.get(key))) == 2


@pytest.mark.gen_test
async def test_a_pending_refund_is_finished_by_a_later_check():
    async with shop() as s:
        _p, _c, key = await paid_order(s)
        GATEWAY.mode = "pending"
        await refund(s, key, {"amount": 1000})
        report = await sweep(s.storage, s.methods)
        assert report.refunds_finished == []  # still pending at the gateway
        (made,) = GATEWAY.refunds
        GATEWAY.refunds[made] = Refund(RefundState.SUCCEEDED, 1000, "EUR", "re_1")
        report = await sweep(s.storage, s.methods)
        assert report.refunds_finished == [key]
        order = await s.storage.orders.get(key)
        assert statuses(order) == [(1000, "succeeded")] and order["payment"]["refund_pending"] is False


@pytest.mark.gen_test
async def test_a_refund_needed_order_is_resolved_by_refunding_it():
    async with shop() as s:
        _p, _c, key = await held_order(s)
        # The gateway took more than the order's total: cancelled, flagged, money held.
        GATEWAY.payments[key] = PaymentCheck(PaymentState.PAID, amount=2600, currency="EUR")
        await s.request("GET", await kit.return_path(s.storage, key, GW))
        order = (await s.admin("GET", "/api/admin/orders?refund_needed=true")).body
        assert [o["order_key"] for o in order] == [key] and order[0]["refunds"]["refundable"] == 2600
        r = await refund(s, key)
        assert r.status == 200 and statuses(r.body) == [(2600, "succeeded")]
        assert r.body["payment"]["refund_needed"] is False and r.body["status"] == "CANCELLED"
        assert (await s.admin("GET", "/api/admin/orders?refund_needed=true")).body == []


@pytest.mark.gen_test
async def test_a_notification_of_a_refund_whose_answer_was_lost_is_that_refund_not_another():
    async with shop() as s:
        _p, _c, key = await paid_order(s)
        GATEWAY.mode = "lost"
        assert (await refund(s, key, {"amount": 700})).status == 503
        body = json.dumps({"order": key, "event": "evt-9", "refunds": [
            {"state": "succeeded", "amount": 700, "reference": "re_1"}]}).encode()
        r = await s.request("POST", f"/api/shop/checkout/notify/{GW}", raw_body=body,
                            headers={"X-Test-Signature": "valid"})
        assert r.status == 200, r
        order = await s.storage.orders.get(key)
        assert statuses(order) == [(700, "succeeded")] and order["payment"]["refunds"][0]["by"] == "admin"
        GATEWAY.mode = "ok"
        r = await refund(s, key, {"amount": 700})  # the admin repeats the request: answered, not redone
        assert r.status == 200 and statuses(r.body) == [(700, "succeeded")]
        assert GATEWAY.refunded(key) == 700 and len(GATEWAY.refunds) == 1
        r = await refund(s, key, {"amount": 700})  # asked once more: a new refund
        assert r.status == 200 and statuses(r.body) == [(700, "succeeded"), (700, "succeeded")]
        assert GATEWAY.refunded(key) == 1400


@pytest.mark.gen_test(timeout=30)
async def test_racing_refunds_never_refund_more_than_was_captured():
    async with shop() as s:
        _p, _c, key = await paid_order(s)  # 2500 captured
        answers = await asyncio.gather(*(refund(s, key, {"amount": 1000}) for _ in range(6)))
        ok = [a for a in answers if a.status == 200]
        assert 1 <= len(ok) <= 2 and all(a.status in (200, 400, 409) for a in answers), answers
        order = await s.storage.orders.get(key)
        assert GATEWAY.refunded(key) == 1000 * len(ok) <= 2500
        assert sum(e["amount"] for e in order["payment"]["refunds"] if e["status"] != "failed") <= 2500


@pytest.mark.gen_test
async def test_an_attempt_left_by_a_process_that_died_is_sent_again_once_its_lease_is_over():
    async with shop() as s:
        _p, _c, key = await paid_order(s)
        r = await refund(s, key, {"amount": 600})
        assert r.status == 200
        # As a process killed while sending a second refund leaves it: requested, leased.
        order = await s.storage.orders.get(key)
        lease = datetime.now(UTC) + timedelta(seconds=60)
        stuck = {**order["payment"]["refunds"][0], "id": "deadbeef", "status": "requested", "reference": None,
                 "amount": 400, "lease_until": lease}
        await s.storage.orders.transition(key, {}, {"payment.refunds": [*order["payment"]["refunds"], stuck]})
        r = await refund(s, key, {"amount": 400})
        assert r.status == 409 and "being sent" in r.body["error"]  # its lease still runs
        order = await s.storage.orders.get(key)
        entries = order["payment"]["refunds"]
        entries[1]["lease_until"] = datetime.now(UTC) - timedelta(seconds=1)
        await s.storage.orders.transition(key, {}, {"payment.refunds": entries})
        r = await refund(s, key, {"amount": 400})
        assert r.status == 200 and statuses(r.body) == [(600, "succeeded"), (400, "succeeded")]
        assert any(k.endswith("-deadbeef") for k in GATEWAY.refunds)


@pytest.mark.gen_test
async def test_the_reconciler_finishes_taking_back_the_units_of_a_cancel_cut_short():
    async with shop() as s:
        p, _c, key = await paid_order(s)
        order = await s.storage.orders.get(key)
        # Cancelled, the process died before the units came back.
        await s.storage.orders.transition(key, {"status": "PROCESSING"},
                                          {"status": "CANCELLED", "stock": "returning", "restock": True})
        assert (await s.storage.products.get(p["_id"]))["stock"] == 3
        await assert_stock_invariant(s.storage)  # runs the reconciler first
        assert (await s.storage.products.get(p["_id"]))["stock"] == 5
        assert (await s.storage.orders.get(key))["stock"] == "returned" and order["stock"] == "committed"
        await assert_stock_invariant(s.storage)
        assert (await s.storage.products.get(p["_id"]))["stock"] == 5  # once


@pytest.mark.gen_test
async def test_an_order_still_being_checked_out_is_409_for_cancel_and_refund():
    async with shop() as s:
        c = await s.customer()
        await s.storage.orders.insert({"_id": "ORD-2026-000042", "customer": c.id, "status": "HOLD",
                                       "stock": "reserving", "items": [], "total": 100, "currency": "EUR",
                                       "created_at": datetime.now(UTC), "history": []})
        for action in (cancel, refund):
            r = await action(s, "ORD-2026-000042")
            assert r.status == 409 and "still being checked out" in r.body["error"], r
        assert (await s.storage.orders.get("ORD-2026-000042"))["status"] == "HOLD"
