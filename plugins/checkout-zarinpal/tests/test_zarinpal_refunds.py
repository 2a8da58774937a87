"""Zarinpal cannot refund through this plugin: the admin is told so, and records a manual refund."""

import checkout_zarinpal
import pytest
from checkout_zarinpal.fake import make_app

from checkout_server.testing import (
    admin_cancel,
    admin_refund,
    gateway_shop,
    paid_order,
)

ZARINPAL = 7
SETTINGS = {"merchant_id": "1344b5d4-0048-11e8-94db-005056a205be", "timeout": 0.5}


@pytest.mark.gen_test(timeout=30)
async def test_a_refund_is_400_saying_zarinpal_cannot_and_a_manual_one_is_recorded():
    async with gateway_shop(checkout_zarinpal, make_app, "zarinpal", SETTINGS, method_id=ZARINPAL,
                            currency="IRR", price=50_000) as gw:
        key = await paid_order(gw)
        calls = len(gw.fake.state.calls)
        r = await admin_refund(gw, key, {"amount": 20_000})
        assert r.status == 400 and "(zarinpal) cannot refund through its gateway" in r.body["error"], r
        r = await admin_cancel(gw, key)
        assert r.status == 400 and (await gw.shop.storage.orders.get(key))["status"] == "PROCESSING"
        assert len(gw.fake.state.calls) == calls  # nothing was sent to Zarinpal
        r = await admin_refund(gw, key, {"manual": True, "note": "refunded from the Zarinpal panel"})
        assert r.status == 200 and r.body["refunds"]["refunded"] == r.body["total"]
        r = await admin_cancel(gw, key)  # nothing left to refund: cancelled, units back
        assert r.status == 200 and r.body["status"] == "CANCELLED"
        assert (await gw.shop.storage.products.get(gw.product_id))["stock"] == gw.stock
