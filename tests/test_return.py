"""The gateway's return, notifications, and the one idempotent settle step."""

from __future__ import annotations

import asyncio
import json

import checkout_fixtures as kit
import pytest
from invariants import assert_stock_invariant

from checkout_server.payments.settlement import settle
from checkout_server.plugin.providers import PaymentCheck, PaymentState


@pytest.fixture(autouse=True)
def fresh_gateway():
    kit.GATEWAY_STATE.clear()
    kit.CALLS.clear()


shop = kit.shop


async def redirect_order(s, stock=5, quantity=2, price=1000):
    p = await s.product(price=price, stock=stock)
    c = await s.customer(cart={p["_id"]: quantity})
    r = await c.checkout(kit.REDIRECT, kit.FLAT)
    assert r.status == 200, r
    key = r.body["next_step"].rsplit("/", 1)[1]
    return p, c, key


def paid(order_total, currency="EUR"):
    return PaymentCheck(PaymentState.PAID, amount=order_total, currency=currency, reference="pay-1")


async def come_back(s, key, method=kit.REDIRECT, **params):
    rt = await kit.return_token(s.storage, key)  # the shopper's own way back
    query = "&".join(f"{k}={v}" for k, v in {"order": key, "rt": rt, **params}.items())
    return await s.request("GET", f"/api/shop/checkout/return/{method}?{query}")


@pytest.mark.gen_test
async def test_paid_return_moves_to_processing_empties_cart_and_redirects():
    async with shop() as s:
        p, c, key = await redirect_order(s)
        kit.GATEWAY_STATE[key] = paid(2500)  # 2 x 1000 + 500 shipping
        # Lines added after the checkout stay in the cart.
        extra = await s.product("Extra", stock=3)
        await s.storage.customers.add_to_cart(c.id, extra["_id"], 1)
        r = await come_back(s, key, Status="OK", forged_amount="1")
        assert r.status == 302
        assert r.headers["Location"] == f"http://shop.test/orders/{key}?payment=paid"
        order = await s.storage.orders.get(key)
        assert order["status"] == "PROCESSING" and order["stock"] == "committed"
        assert (await s.storage.customers.get(c.id))["cart"] == {str(extra["_id"]): 1}
        assert (await s.storage.products.get(p["_id"]))["holds"] == {}
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_failed_return_cancels_and_gives_units_back_once():
    async with shop() as s:
        p, c, key = await redirect_order(s)
        kit.GATEWAY_STATE[key] = PaymentCheck(PaymentState.FAILED, detail="cancelled by shopper")
        r = await come_back(s, key)
        assert r.status == 302 and r.headers["Location"].endswith("payment=failed")
        for _ in range(3):  # replays change nothing
            r = await come_back(s, key)
            assert r.headers["Location"].endswith("payment=failed")
        assert (await s.storage.products.get(p["_id"]))["stock"] == 5
        order = await s.storage.orders.get(key)
        assert order["status"] == "CANCELLED" and order["stock"] == "released"
        assert [h["status"] for h in order["history"]] == ["HOLD", "CANCELLED"]
        assert (await s.storage.customers.get(c.id))["cart"] == {str(p["_id"]): 2}
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_amount_or_currency_mismatch_cancels():
    async with shop() as s:
        for check in (paid(1), paid(2500, "USD")):
            _p, _c, key = await redirect_order(s)
            kit.GATEWAY_STATE[key] = check
            r = await come_back(s, key)
            assert r.headers["Location"].endswith("payment=failed")
            order = await s.storage.orders.get(key)
            assert order["status"] == "CANCELLED" and "mismatch" in order["history"][-1]["reason"]
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_pending_or_unreachable_gateway_leaves_hold():
    async with shop() as s:
        _p, _c, key = await redirect_order(s)
        r = await come_back(s, key)
        assert r.headers["Location"].endswith("payment=pending")
        kit.GATEWAY_STATE[key] = "down"
        r = await come_back(s, key)
        assert r.status == 302 and r.headers["Location"].endswith("payment=pending")
        assert (await s.storage.orders.get(key))["status"] == "HOLD"
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_replayed_return_after_payment_does_not_ask_the_gateway_again():
    async with shop() as s:
        _p, _c, key = await redirect_order(s)
        kit.GATEWAY_STATE[key] = paid(2500)
        await come_back(s, key)
        kit.CALLS.clear()
        kit.GATEWAY_STATE[key] = PaymentCheck(PaymentState.FAILED)
        r = await come_back(s, key)
        assert r.headers["Location"].endswith("payment=paid") and kit.CALLS == []
        assert (await s.storage.orders.get(key))["status"] == "PROCESSING"


@pytest.mark.gen_test
async def test_return_for_unknown_order_or_other_method():
    async with shop() as s:
        _p, _c, key = await redirect_order(s)
        assert (await come_back(s, "ORD-2026-999999")).status == 404
        r = await come_back(s, key, method=kit.DIRECT)
        assert r.status == 400 and "error" in r.body
        assert (await come_back(s, key, method=99)).status == 404
        assert (await s.request("GET", f"/api/shop/checkout/return/{kit.REDIRECT}")).status == 404


@pytest.mark.gen_test
async def test_racing_settlements_change_the_order_once():
    async with shop() as s:
        p, _c, key = await redirect_order(s, stock=5, quantity=2)
        order = await s.storage.orders.get(key)
        outcomes = await asyncio.gather(
            *[settle(s.storage, s.methods, order, PaymentCheck(PaymentState.FAILED)) for _ in range(5)],
            *[settle(s.storage, s.methods, order, paid(2500)) for _ in range(5)])
        assert sum(o.changed for o in outcomes) == 1
        winner = next(o for o in outcomes if o.changed)
        assert {o.result for o in outcomes} == {winner.result}
        stock = (await s.storage.products.get(p["_id"]))["stock"]
        assert stock == (3 if winner.result == "paid" else 5)
        await assert_stock_invariant(s.storage)


# -- notifications

async def notify(s, body, signature="valid", method=kit.REDIRECT):
    return await s.request("POST", f"/api/shop/checkout/notify/{method}", raw_body=json.dumps(body).encode(),
                           headers={"X-Test-Signature": signature, "Content-Type": "application/json"})


@pytest.mark.gen_test
async def test_notification_settles_and_is_deduplicated():
    async with shop() as s:
        _p, _c, key = await redirect_order(s)
        r = await notify(s, {"order": key, "event": "evt_1", "state": "paid", "amount": 2500, "currency": "EUR"})
        assert r.status == 200 and r.body["result"] == "paid"
        r = await notify(s, {"order": key, "event": "evt_1", "state": "failed"})
        assert r.status == 200 and r.body["status"] == "duplicate"
        order = await s.storage.orders.get(key)
        assert order["status"] == "PROCESSING" and order["events"] == ["evt_1"]
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_notification_without_state_asks_the_gateway():
    async with shop() as s:
        p, _c, key = await redirect_order(s)
        kit.GATEWAY_STATE[key] = PaymentCheck(PaymentState.FAILED)
        r = await notify(s, {"order": key, "event": "evt_2"})
        assert r.status == 200 and r.body["result"] == "failed"
        assert (await s.storage.products.get(p["_id"]))["stock"] == 5


@pytest.mark.gen_test
async def test_forged_notification_is_400_and_changes_nothing():
    async with shop() as s:
        _p, _c, key = await redirect_order(s)
        r = await notify(s, {"order": key, "state": "paid", "amount": 2500, "currency": "EUR"}, signature="forged")
        assert r.status == 400 and "bad signature" in r.body["error"]
        assert (await s.storage.orders.get(key))["status"] == "HOLD"
        r = await notify(s, {"order": key}, method=kit.DIRECT)
        assert r.status == 400  # the direct method takes no notifications


@pytest.mark.gen_test
async def test_a_paid_return_whose_clean_up_fails_still_answers_paid(monkeypatch):
    from pymongo.errors import AutoReconnect

    from checkout_server.stock import reservations

    async with shop() as s:
        p, c, key = await redirect_order(s)
        kit.GATEWAY_STATE[key] = paid(2500)

        async def blip(*args, **kwargs):
            raise AutoReconnect("primary stepped down")

        # The order moved to PROCESSING; then the database blips before its stock and cart are done.
        monkeypatch.setattr(s.storage.products, "commit", blip)
        r = await come_back(s, key)
        assert r.status == 302 and r.headers["Location"].endswith("payment=paid")
        assert (await s.storage.orders.get(key))["status"] == "PROCESSING"
        monkeypatch.undo()
        await reservations.reconcile(s.storage)
        order = await s.storage.orders.get(key)
        assert order["stock"] == "committed"
        assert (await s.storage.customers.get(c.id))["cart"] == {}
        assert (await s.storage.products.get(p["_id"]))["holds"] == {}
        await assert_stock_invariant(s.storage)
