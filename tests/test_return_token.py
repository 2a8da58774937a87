"""The public return endpoint settles an order only for the shopper's own return URL.

Order keys are sequential, so the key alone is no secret: the return URL the gateway is given
carries a per-order token (`rt`), and a return without it is answered exactly as for an
unknown order, asks no gateway and changes nothing.
"""

from __future__ import annotations

import logging

import checkout_fixtures as kit
import pytest
from invariants import assert_stock_invariant

from checkout_server.methods.table import MethodTable
from checkout_server.plugin.providers import PaymentCheck, PaymentState


@pytest.fixture(autouse=True)
def fresh_gateway():
    kit.GATEWAY_STATE.clear()
    kit.CALLS.clear()


shop = kit.shop


async def held_order(s, quantity=2):
    p = await s.product(price=1000, stock=5)
    c = await s.customer(cart={p["_id"]: quantity})
    r = await c.checkout(kit.REDIRECT, kit.FLAT)
    assert r.status == 200, r
    return p, c, r.body["next_step"].rsplit("/", 1)[1]


@pytest.mark.gen_test
async def test_a_strangers_return_cannot_cancel_and_learns_nothing():
    async with shop() as s:
        p, _c, key = await held_order(s)
        # The gateway would call it cancelled (as Stripe's cancel return or Zarinpal's -51 do).
        kit.GATEWAY_STATE[key] = PaymentCheck(PaymentState.FAILED, detail="cancelled by the shopper")
        unknown = await s.request("GET", f"/api/shop/checkout/return/{kit.REDIRECT}?order=ORD-2026-999999")
        assert unknown.status == 404
        rt_of_key = await kit.return_token(s.storage, key)
        _p2, _c2, other_key = await held_order(s, quantity=1)
        kit.CALLS.clear()
        for query in (f"order={key}", f"order={key}&cancelled=1", f"order={key}&rt=",
                      f"order={key}&rt=guess{rt_of_key[5:]}", f"order={other_key}&rt={rt_of_key}"):
            r = await s.request("GET", f"/api/shop/checkout/return/{kit.REDIRECT}?{query}")
            assert (r.status, r.body) == (unknown.status, unknown.body), query
            assert "Location" not in r.headers
        assert kit.CALLS == []  # no gateway was asked
        for order_key in (key, other_key):
            assert (await s.storage.orders.get(order_key))["status"] == "HOLD"
        assert (await s.storage.products.get(p["_id"]))["stock"] == 3
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_the_shoppers_own_return_still_settles_paid_and_cancelled():
    async with shop() as s:
        _p, c, paid_key = await held_order(s)
        kit.GATEWAY_STATE[paid_key] = PaymentCheck(PaymentState.PAID, amount=2500, currency="EUR")
        r = await s.request("GET", await kit.return_path(s.storage, paid_key, kit.REDIRECT))
        assert r.status == 302 and r.headers["Location"].endswith("payment=paid")
        await s.storage.customers.add_to_cart(c.id, _p["_id"], 1)
        cancelled_key = (await c.checkout(kit.REDIRECT, kit.FLAT)).body["next_step"].rsplit("/", 1)[1]
        kit.GATEWAY_STATE[cancelled_key] = PaymentCheck(PaymentState.FAILED)
        r = await s.request("GET", await kit.return_path(s.storage, cancelled_key, kit.REDIRECT) + "&cancelled=1")
        assert r.status == 302 and r.headers["Location"].endswith("payment=failed")
        assert (await s.storage.orders.get(cancelled_key))["status"] == "CANCELLED"
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_a_return_for_a_method_removed_by_a_reload_still_lands_on_the_site(caplog):
    async with shop() as s:
        _p, _c, key = await held_order(s)
        kit.GATEWAY_STATE[key] = PaymentCheck(PaymentState.FAILED)
        old = s.methods
        s.app.method_registry.table = MethodTable(
            old.config, {i: m for i, m in old.payment.items() if i != kit.REDIRECT}, old.shipping)
        back = await kit.return_path(s.storage, key, kit.REDIRECT)
        kit.CALLS.clear()
        with caplog.at_level(logging.ERROR, logger="checkout_server.checkout.flow"):
            r = await s.request("GET", back)
        assert r.status == 302 and r.headers["Location"] == f"http://shop.test/orders/{key}?payment=pending"
        assert kit.CALLS == [] and (await s.storage.orders.get(key))["status"] == "HOLD"
        assert any(key in rec.getMessage() and str(kit.REDIRECT) in rec.getMessage()
                   for rec in caplog.records if rec.levelno == logging.ERROR)
        # A stranger still learns nothing, and an unknown method for another order is 404.
        r = await s.request("GET", f"/api/shop/checkout/return/{kit.REDIRECT}?order={key}")
        assert r.status == 404 and r.body == {"error": "order not found"}
        assert (await s.request("GET", back.replace(f"/return/{kit.REDIRECT}?", "/return/99?"))).status == 404
