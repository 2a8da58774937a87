"""The sandbox redirect flow end to end: checkout, the test page, the return, settlement."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlencode

import checkout_sandbox
import pytest

from checkout_server.plugin import (
    RefundRequest,
    RefundState,
    ShippingProvider,
    hookimpl,
)
from checkout_server.testing import TestShop, check_payment_provider, make_order


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


def payments(s: TestShop):
    """The sandbox's payments: the plugin's own documents."""
    return s.documents(checkout_sandbox)


@pytest.mark.gen_test(timeout=30)
async def test_payments_are_kept_in_the_sandbox_plugins_own_documents():
    async with shop() as s:
        await start(s)
        # The entry point's name, as in the service: the collection is plugin_sandbox.
        assert payments(s).plugin == "sandbox"
        [payment] = await s.storage.plugin_documents("sandbox").find()
        assert payment["state"] == "created" and payment["_id"].startswith("sbx_")


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


def form_token(html: str) -> str:
    [token] = re.findall(r'<input type="hidden" name="form_token" value="([\w-]+)">', html)
    return token


async def decide(s, page, decision, token: str | None = None):
    """Press a button as the shopper's browser does: the form as the page served it."""
    if token is None:
        token = form_token((await s.request("GET", page)).raw.decode())
    return await s.request("POST", page, raw_body=urlencode({"decision": decision, "form_token": token}).encode(),
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
        await decide(s, page, "cancel", token=(await payments(s).get(page.rsplit("/", 1)[1]))["form_token"])
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
        back = (await payments(s).get(page.rsplit("/", 1)[1]))["return_url"]
        r = await s.request("GET", f"{back[len(s.base_url):]}&state=paid&status=OK")
        assert r.headers["Location"].endswith("payment=pending")
        assert (await s.storage.orders.get(key))["status"] == "HOLD"


@pytest.mark.gen_test(timeout=30)
async def test_pages_exist_only_while_a_sandbox_method_is_configured():
    async with shop() as s:
        _p, _c, page = await start(s)
        reference = page.rsplit("/", 1)[1]
    # The same database, the sandbox method gone from the config: its pages are gone too.
    async with TestShop(config={**CONFIG, "payment_methods": []}, storage=s.storage,
                        plugins=[checkout_sandbox, shipping_plugin]) as s:
        assert await payments(s).get(reference) is not None
        for method, path in (("GET", page), ("POST", page), ("GET", "/sandbox/result/ORD-2026-000001")):
            r = await s.request(method, path, raw_body=b"decision=pay" if method == "POST" else None)
            assert r.status == 404 and r.body["error"], (method, path, r)


@pytest.mark.gen_test(timeout=30)
async def test_only_the_provider_records_payments_and_the_page_returns_to_the_order_only():
    async with shop() as s:
        _p, _c, page = await start(s)
        # No public API creates a payment (the provider stores it itself) or reads one.
        r = await s.request("POST", "/sandbox/api/payments", {
            "order_key": "ORD-2026-000001", "amount": 1, "currency": "EUR", "return_url": "https://evil.test/"})
        assert r.status == 404
        assert (await s.request("GET", f"/sandbox/api/payments/{page.rsplit('/', 1)[1]}")).status == 404
        [payment] = await payments(s).find()
        key = (await s.storage.orders.find({}))[0]["_id"]
        assert (payment["order_key"], payment["amount"], payment["currency"], payment["state"]) == (
            key, 2990, "EUR", "created")
        assert payment["return_url"].startswith(f"{s.base_url}/api/shop/checkout/return/2?order={key}&rt=")
        # A reference that is no payment, or too long to be one, is no page.
        for path in ("/sandbox/pay/sbx_unknown", "/sandbox/pay/" + "x" * 65):
            assert (await s.request("GET", path)).status == 404


@pytest.mark.gen_test(timeout=30)
async def test_a_payment_is_only_its_own_orders():
    async with shop() as s:
        _p, _c, page = await start(s)
        reference = page.rsplit("/", 1)[1]
        await decide(s, page, "pay")
        provider = s.methods.payment[2].provider
        [payment] = await payments(s).find()
        mine = make_order(payment["order_key"], total=2990, payment={"reference": reference})
        assert (await provider.check(mine)).state.value == "paid"
        # Another order naming this (paid) payment is not paid by it, nor is one naming none.
        for other in (make_order("ORD-2026-000099", total=2990, payment={"reference": reference}),
                      make_order(payment["order_key"], total=2990, payment={})):
            check = await provider.check(other)
            assert check.state.value == "failed" and check.detail == "no sandbox payment was started"


@pytest.mark.gen_test(timeout=30)
async def test_hold_expiry_cancels_an_undecided_payment_and_settles_a_paid_one():
    from datetime import UTC, datetime, timedelta

    async with shop() as s:
        p, c, undecided = await start(s)
        await s.storage.customers.add_to_cart(c.id, p["_id"], 1)  # 3 of the 3 left
        r = await c.checkout(2, 1)
        paid = r.body["next_step"][len(s.base_url):]
        await decide(s, paid, "pay")  # paid, browser closed before coming back
        keys = {o["payment"]["reference"]: o["_id"] for o in await s.storage.orders.find({})}
        report = await s.sweep(now=datetime.now(UTC) + timedelta(hours=1))
        assert report.cancelled == [keys[undecided.rsplit("/", 1)[1]]]
        assert report.paid == [keys[paid.rsplit("/", 1)[1]]] and report.deferred == []
        cancelled = await s.storage.orders.get(report.cancelled[0])
        assert cancelled["history"][-1]["reason"] == "no decision on the sandbox page"
        assert (await s.storage.products.get(p["_id"]))["stock"] == 2  # 5 - the 3 paid for


@pytest.mark.gen_test(timeout=30)
async def test_another_site_cannot_press_pay_nor_frame_the_page():
    async with shop() as s:
        _p, _c, page = await start(s)
        _p2, _c2, other = await start(s)
        reference = page.rsplit("/", 1)[1]
        r = await s.request("GET", page)
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
        other_token = form_token((await s.request("GET", other)).raw.decode())
        # A cross-site form knows the URL at best: no token, a wrong one, another payment's.
        for fields in ({"decision": "pay"}, {"decision": "pay", "form_token": "x" * 32},
                       {"decision": "pay", "form_token": "é"}, {"decision": "pay", "form_token": other_token}):
            r = await s.request("POST", page, raw_body=urlencode(fields).encode(),
                                headers={"Content-Type": "application/x-www-form-urlencoded",
                                         "Origin": "http://evil.test"})
            assert r.status == 403 and "Location" not in r.headers and r.body["error"], (fields, r)
        assert (await payments(s).get(reference))["state"] == "created"
        # The page still works for the shopper.
        assert (await decide(s, page, "pay")).status == 303


@pytest.mark.gen_test(timeout=30)
async def test_the_sandbox_refunds_partly_then_all_once_each_and_a_cancel_gives_the_units_back():
    async with shop() as s:
        p, _c, page = await start(s)
        back = (await decide(s, page, "pay")).headers["Location"]
        await s.request("GET", back[len(s.base_url):])
        key = (await s.storage.orders.find({}))[0]["_id"]
        r = await s.admin("POST", f"/api/admin/orders/{key}/refund", {"amount": 990})
        assert r.status == 200 and [(e["amount"], e["status"]) for e in r.body["payment"]["refunds"]] == [
            (990, "succeeded")], r
        assert r.body["payment"]["refunds"][0]["reference"].startswith("sbr_")
        r = await s.admin("POST", f"/api/admin/orders/{key}/cancel", {"reason": "changed mind"})
        assert r.status == 200 and r.body["status"] == "CANCELLED" and r.body["refunds"]["refunded"] == 2990
        payment = await payments(s).get(page.rsplit("/", 1)[1])
        assert payment["refunded"] == 2990 and len(payment["refunds"]) == 2
        assert (await s.storage.products.get(p["_id"]))["stock"] == 5
        # Nothing is left to refund; and no public API refunds.
        provider = s.methods.payment[2].provider
        order = make_order(key, total=2990, payment={"reference": page.rsplit("/", 1)[1]})
        refused = await provider.refund(order, RefundRequest(1, "EUR", "x1"))
        assert refused.state is RefundState.FAILED and "less than that left" in refused.detail
        r = await s.request("POST", f"{page.replace('/pay/', '/api/payments/')}/refunds", {"attempt_id": "x1", "amount": 1})
        assert r.status == 404


@pytest.mark.gen_test(timeout=30)
async def test_racing_refunds_refund_once_per_attempt_and_never_more_than_paid():
    async with shop() as s:
        _p, _c, page = await start(s)
        reference = page.rsplit("/", 1)[1]
        key = (await s.storage.orders.find({}))[0]["_id"]
        order = make_order(key, total=2990, payment={"reference": reference})
        provider = s.methods.payment[2].provider
        refused = await provider.refund(order, RefundRequest(100, "EUR", "early"))
        assert refused.state is RefundState.FAILED  # not paid yet
        await decide(s, page, "pay")
        answers = await asyncio.gather(*(provider.refund(order, RefundRequest(900, "EUR", f"a{n}")) for n in range(6)))
        assert sorted(a.state.value for a in answers) == ["failed"] * 3 + ["succeeded"] * 3
        first = next(a for a in answers if a.state is RefundState.SUCCEEDED)
        again = await provider.refund(order, RefundRequest(900, "EUR", first.attempt_id))
        assert again.state is RefundState.SUCCEEDED  # the repeat of an attempt: no second refund
        payment = await payments(s).get(reference)
        assert payment["refunded"] == 2700 and sorted(payment["refunds"].values()) == [900, 900, 900]
        assert (await provider.refund(order, RefundRequest(290, "EUR", "last"))).state is RefundState.SUCCEEDED
        assert (await provider.refund(order, RefundRequest(1, "EUR", "over"))).state is RefundState.FAILED
