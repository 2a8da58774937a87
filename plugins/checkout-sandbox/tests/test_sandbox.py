"""The sandbox redirect flow end to end: checkout, the test page, the return, settlement."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import checkout_sandbox
import pytest

from checkout_server.hookspecs import hookimpl
from checkout_server.providers import ShippingProvider
from checkout_server.testing import TestShop, check_payment_provider


class Courier(ShippingProvider):
    name = "test_courier"

    def quote(self, cart, address):
        return 490


class shipping_plugin:
    @staticmethod
    @hookimpl
    def register_shipping_providers(register):
        register(Courier)


CONFIG = {
    "site": {"currency": "EUR", "return_url": "http://shop.test/orders/{order_key}?payment={result}"},
    "payment_methods": [{"id": 2, "provider": "sandbox", "title": "Sandbox card (test payments)"}],
    "shipping_methods": [{"id": 1, "provider": "test_courier", "title": "Courier"}],
}


def shop(config=CONFIG) -> TestShop:
    return TestShop(config=config, plugins=[checkout_sandbox, shipping_plugin])


def test_keeps_the_payment_provider_contract():
    assert check_payment_provider(checkout_sandbox.SandboxPayment).flow == "redirect"


async def start(s):
    p = await s.product("Widget", price=1250, stock=5)
    c = await s.customer(cart={p["_id"]: 2})
    r = await c.checkout(2, 1)
    assert r.status == 200 and set(r.body) == {"next_step"}, r
    url = r.body["next_step"]
    assert url.startswith(f"{s.base_url}/sandbox/pay/")
    return p, c, url[len(s.base_url):]


async def decide(s, page, decision):
    return await s.request("POST", page, raw_body=urlencode({"decision": decision}).encode(),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})


@pytest.mark.gen_test(timeout=30)
async def test_pay_on_the_page_then_return_settles_the_order():
    async with shop() as s:
        _p, c, page = await start(s)
        html = (await s.request("GET", page)).raw.decode()
        [key] = re.findall(r"ORD-\d{4}-\d{6}", html)
        assert "29.90 EUR" in html and 'value="pay"' in html and 'value="cancel"' in html
        r = await decide(s, page, "pay")
        assert r.status == 303
        back = r.headers["Location"]
        assert re.fullmatch(rf"{s.base_url}/api/shop/checkout/return/2\?order={key}&rt=[\w-]{{22}}", back)
        r = await s.request("GET", back[len(s.base_url):])
        assert r.status == 302 and r.headers["Location"] == f"http://shop.test/orders/{key}?payment=paid"
        order = await s.storage.orders.get(key)
        assert order["status"] == "PROCESSING" and order["total"] == 2990
        assert (await s.storage.customers.get(c.id))["cart"] == {}
        # The page now says so, and a second decision changes nothing.
        assert "already <strong>paid" in (await s.request("GET", page)).raw.decode()
        await decide(s, page, "cancel")
        r = await s.request("GET", back[len(s.base_url):])
        assert r.headers["Location"].endswith("payment=paid")


@pytest.mark.gen_test(timeout=30)
async def test_cancel_on_the_page_cancels_and_gives_units_back():
    async with shop() as s:
        p, _c, page = await start(s)
        back = (await decide(s, page, "cancel")).headers["Location"]
        r = await s.request("GET", back[len(s.base_url):])
        assert r.headers["Location"].endswith("payment=failed")
        assert (await s.storage.products.get(p["_id"]))["stock"] == 5


@pytest.mark.gen_test(timeout=30)
async def test_the_return_query_string_is_never_trusted():
    async with shop() as s:
        _p, _c, page = await start(s)
        key = (await s.storage.orders.find({}))[0]["_id"]
        # The shopper's own return URL (with its token), before any decision, with forged params.
        back = (await s.storage.sandbox_payments.get(page.rsplit("/", 1)[1]))["return_url"]
        r = await s.request("GET", f"{back[len(s.base_url):]}&state=paid&status=OK")
        assert r.headers["Location"].endswith("payment=pending")
        assert (await s.storage.orders.get(key))["status"] == "HOLD"


@pytest.mark.gen_test(timeout=30)
async def test_pages_exist_only_while_a_sandbox_method_is_configured():
    config = {**CONFIG, "payment_methods": []}
    async with shop(config) as s:
        assert (await s.request("GET", "/sandbox/pay/sbx_x")).status == 404
        assert (await s.request("POST", "/sandbox/api/payments", {"order_key": "x"})).status == 404


@pytest.mark.gen_test(timeout=30)
async def test_the_page_is_no_open_redirect():
    async with shop() as s:
        r = await s.request("POST", "/sandbox/api/payments", {
            "order_key": "ORD-2026-000001", "amount": 1, "currency": "EUR", "return_url": "https://evil.test/"})
        assert r.status == 400


@pytest.mark.gen_test(timeout=30)
async def test_hold_expiry_cancels_an_undecided_payment_and_settles_a_paid_one():
    from datetime import UTC, datetime, timedelta

    from checkout_server.sweeper import sweep

    async with shop() as s:
        p, c, undecided = await start(s)
        await s.storage.customers.add_to_cart(c.id, p["_id"], 1)  # 3 of the 3 left
        r = await c.checkout(2, 1)
        paid = r.body["next_step"][len(s.base_url):]
        await decide(s, paid, "pay")  # paid, browser closed before coming back
        keys = {o["payment"]["reference"]: o["_id"] for o in await s.storage.orders.find({})}
        report = await sweep(s.storage, s.methods, now=datetime.now(UTC) + timedelta(hours=1))
        assert report.cancelled == [keys[undecided.rsplit("/", 1)[1]]]
        assert report.paid == [keys[paid.rsplit("/", 1)[1]]] and report.deferred == []
        cancelled = await s.storage.orders.get(report.cancelled[0])
        assert cancelled["history"][-1]["reason"] == "no decision on the sandbox page"
        assert (await s.storage.products.get(p["_id"]))["stock"] == 2  # 5 - the 3 paid for
