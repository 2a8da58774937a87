"""The sandbox redirect flow end to end: checkout, the test page, the return, settlement."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import checkout_sandbox
import pytest

from checkout_server.plugin import ShippingProvider, hookimpl
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
        await decide(s, page, "cancel", token=(await s.storage.sandbox_payments.get(page.rsplit("/", 1)[1]))[
            "form_token"])
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

    from checkout_server.payments.sweeper import sweep

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
        assert (await s.storage.sandbox_payments.get(reference))["state"] == "created"
        # The page still works for the shopper.
        assert (await decide(s, page, "pay")).status == 303


def _create(s, body):
    return s.request("POST", "/sandbox/api/payments", body)


@pytest.mark.gen_test(timeout=30)
async def test_payment_records_are_created_only_for_an_order_starting_a_sandbox_payment():
    from checkout_server.payments.return_tokens import new_return_token, payment_urls

    async with shop() as s:
        token, token_hash = new_return_token()
        order = {"_id": "ORD-2026-000077", "status": "HOLD", "stock": "reserving", "total": 2990,
                 "currency": "EUR", "payment_method": 2, "payment": {"provider": "sandbox"},
                 "return_token": token_hash}
        await s.storage.orders.insert(order)
        return_url = payment_urls(s.methods.site, s.app.reverse_url, 2, order["_id"], token).return_url
        good = {"order_key": order["_id"], "amount": 2990, "currency": "EUR", "return_url": return_url}
        refused = [
            {**good, "order_key": "ORD-2026-000078"},  # no such order
            {**good, "amount": 1},
            {**good, "amount": True},
            {**good, "currency": "USD"},
            {**good, "return_url": return_url[:-1] + ("A" if return_url[-1] != "A" else "B")},  # not its rt
            {**good, "return_url": return_url + "&next=https://evil.test/"},
            {**good, "return_url": "https://evil.test/"},
            {**good, "order_key": "x" * 65},
            {**good, "extra": "x"},
            {k: v for k, v in good.items() if k != "currency"},
            [good],
        ]
        for body in refused:
            r = await _create(s, body)
            assert r.status == 400 and r.body["error"], (body, r)
        r = await s.request("POST", "/sandbox/api/payments", raw_body=b"not json")
        assert r.status == 400 and r.body["error"]
        r = await _create(s, {**good, "order_key": "x" * 60000})
        assert r.status == 413 and r.body["error"]
        for change in ({"status": "CANCELLED"}, {"stock": "held"}, {"payment": {"provider": "cash_on_delivery"}}):
            await s.storage.orders.collection.update_one({"_id": order["_id"]}, {"$set": change})
            assert (await _create(s, good)).status == 400, change
            await s.storage.orders.collection.replace_one({"_id": order["_id"]}, order)
        assert await s.storage.db.sandbox_payments.count_documents({}) == 0
        r = await _create(s, good)
        assert r.status == 200 and r.body["reference"].startswith("sbx_")


@pytest.mark.gen_test(timeout=30)
async def test_a_started_payment_gets_no_second_record():
    async with shop() as s:
        _p, _c, page = await start(s)
        record = await s.storage.sandbox_payments.get(page.rsplit("/", 1)[1])
        r = await _create(s, {k: record[k] for k in ("order_key", "amount", "currency", "return_url")})
        assert r.status == 400
        assert await s.storage.db.sandbox_payments.count_documents({}) == 1


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
        record = await s.storage.sandbox_payments.get(page.rsplit("/", 1)[1])
        assert record["refunded"] == 2990 and len(record["refunds"]) == 2
        assert (await s.storage.products.get(p["_id"]))["stock"] == 5
        # The sandbox's own API refuses more than was paid, and garbage.
        reference = page.rsplit("/", 1)[1]
        r = await s.request("POST", f"/sandbox/api/payments/{reference}/refunds", {"attempt_id": "x1", "amount": 1})
        assert r.status == 400
        r = await s.request("POST", f"/sandbox/api/payments/{reference}/refunds", {"attempt_id": "a.b", "amount": 1})
        assert r.status == 400
