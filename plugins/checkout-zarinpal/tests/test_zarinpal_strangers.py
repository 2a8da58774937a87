"""Zarinpal end to end: a stranger's return before the shopper pays cannot cancel the order.

Zarinpal's verify answers -51 (not paid) until the shopper pays, which a return settles as
FAILED: only the shopper's own return URL (with its token) may ask.
"""

import checkout_zarinpal
import pytest
from checkout_zarinpal.fake import make_app

from checkout_server.testing import SHOP_URL, gateway_shop

ZARINPAL = 7
SETTINGS = {"merchant_id": "1344b5d4-0048-11e8-94db-005056a205be", "timeout": 0.5}


@pytest.mark.gen_test(timeout=30)
async def test_a_stranger_cannot_cancel_an_unpaid_order_and_the_shopper_still_pays():
    async with gateway_shop(checkout_zarinpal, make_app, "zarinpal", SETTINGS, method_id=ZARINPAL,
                            currency="IRR", price=50_000) as gw:
        r = await gw.checkout()
        key = await gw.last_order_key()
        ((authority, _record),) = gw.fake.state.records.items()
        stranger = await gw.back_to_shop(f"{SHOP_URL}/api/shop/checkout/return/{ZARINPAL}?order={key}"
                                         f"&Authority={authority}&Status=NOK")
        assert stranger.status == 404 and "Location" not in stranger.headers
        assert gw.fake.state.count("verify") == 0
        await gw.assert_held(key)
        r = await gw.follow(r.body["next_step"], "approve")
        assert r.headers["Location"] == gw.result_url(key, "paid")
        await gw.assert_paid(key)
