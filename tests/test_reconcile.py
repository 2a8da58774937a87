"""Crash safety of the stock saga: faults at every step, and a server killed mid-checkout."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import checkout_fixtures as kit
import pytest
from invariants import assert_stock_invariant
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from checkout_server.plugin.providers import PaymentCheck, PaymentState
from checkout_server.plugin.web import hash_token
from checkout_server.stock import commits, reservations
from checkout_server.storage import Storage

TESTS = Path(__file__).parent


@pytest.fixture(autouse=True)
def no_faults():
    kit.GATEWAY_STATE.clear()
    yield
    reservations.faults.clear()


class Crash(Exception):
    pass


def crash():
    raise Crash("injected fault")


shop = kit.shop


@pytest.mark.parametrize("point", ["order_inserted", "stock_reserved", "payment_started"])
@pytest.mark.parametrize("method", [kit.DIRECT, kit.REDIRECT])
@pytest.mark.gen_test
async def test_fault_during_checkout_is_undone_by_the_reconciler(point, method):
    async with shop() as s:
        p = await s.product(stock=5)
        q = await s.product(stock=5)
        c = await s.customer(cart={p["_id"]: 2, q["_id"]: 1})
        reservations.faults[point] = crash
        r = await c.checkout(method, kit.FLAT)
        assert r.status == 500 and r.body == {"error": "internal server error"}
        reservations.faults.clear()
        report = await reservations.reconcile(s.storage, stale_after=reservations.timedelta(0))
        assert len(report.interrupted) == 1
        assert await s.storage.orders.count({}) == 0
        assert [(await s.storage.products.get(x["_id"]))["stock"] for x in (p, q)] == [5, 5]
        assert (await s.storage.customers.get(c.id))["cart"] == {str(p["_id"]): 2, str(q["_id"]): 1}
        await assert_stock_invariant(s.storage)
        # The customer is not locked out: the next checkout works.
        assert (await c.checkout(method, kit.FLAT)).status == 200
        await assert_stock_invariant(s.storage)


@pytest.mark.parametrize("state", [PaymentState.PAID, PaymentState.FAILED])
@pytest.mark.gen_test
async def test_fault_after_settle_transition_is_finished_by_the_reconciler(state):
    async with shop() as s:
        p = await s.product(stock=5)
        c = await s.customer(cart={p["_id"]: 2})
        key = (await c.checkout(kit.REDIRECT, kit.FLAT)).body["next_step"].rsplit("/", 1)[1]
        kit.GATEWAY_STATE[key] = PaymentCheck(state, amount=2500, currency="EUR")
        reservations.faults["settled"] = crash
        r = await s.request("GET", await kit.return_path(s.storage, key, kit.REDIRECT))
        # The status has moved: that is the shopper's answer, whatever is left to finish.
        result = "paid" if state is PaymentState.PAID else "failed"
        assert r.status == 302 and r.headers["Location"].endswith(f"payment={result}")
        reservations.faults.clear()
        order = await s.storage.orders.get(key)
        assert order["stock"] == "held" and order["status"] != "HOLD"
        await reservations.reconcile(s.storage)  # no staleness needed for final orders
        order = await s.storage.orders.get(key)
        assert order["stock"] == ("committed" if state is PaymentState.PAID else "released")
        assert (await s.storage.products.get(p["_id"]))["stock"] == (3 if state is PaymentState.PAID else 5)
        await assert_stock_invariant(s.storage)


@pytest.mark.gen_test
async def test_reconciler_leaves_a_live_checkout_alone():
    async with shop() as s:
        p = await s.product(stock=5)
        c = await s.customer(cart={p["_id"]: 2})
        reached, release = asyncio.Event(), asyncio.Event()

        async def pause():
            reached.set()
            await release.wait()

        reservations.faults["stock_reserved"] = pause
        pending = asyncio.ensure_future(c.checkout(kit.DIRECT, kit.FLAT))
        await reached.wait()
        assert not await reservations.reconcile(s.storage)  # seconds old: not stale
        release.set()
        r = await pending
        assert r.status == 200 and "order_key" in r.body
        await assert_stock_invariant(s.storage)


@pytest.mark.parametrize("flow,point", [("direct", "markers_committed"), ("direct", "cart_cleared"),
                                        ("redirect", "settled"), ("redirect", "markers_committed"),
                                        ("redirect", "cart_cleared")])
@pytest.mark.gen_test
async def test_paid_order_interrupted_after_payment_is_finished_once(flow, point):
    async with shop() as s:
        p = await s.product(stock=5)
        q = await s.product(stock=5)
        c = await s.customer(cart={p["_id"]: 2, q["_id"]: 1})
        reservations.faults[point] = crash
        if flow == "direct":
            r = await c.checkout(kit.DIRECT, kit.FLAT)
            # The paid order's markers are dropped by a batch after the answer: run it now,
            # with the fault in place (a crash there leaves the order `held`, as in the request).
            await commits.flush(s.storage)
            [order] = await s.storage.orders.find({})
            key = order["_id"]
            # The order is paid: the checkout's answer is fixed, the rest is the reconciler's.
            assert r.status == 200 and r.body == {"order_key": key}
        else:
            key = (await c.checkout(kit.REDIRECT, kit.FLAT)).body["next_step"].rsplit("/", 1)[1]
            total = (await s.storage.orders.get(key))["total"]
            kit.GATEWAY_STATE[key] = PaymentCheck(PaymentState.PAID, amount=total, currency="EUR")
            r = await s.request("GET", await kit.return_path(s.storage, key, kit.REDIRECT))
            # The order is paid: the shopper is told so; the rest is the reconciler's.
            assert r.status == 302 and r.headers["Location"].endswith("payment=paid")
        reservations.faults.clear()
        order = await s.storage.orders.get(key)
        assert (order["status"], order["stock"]) == ("PROCESSING", "held")
        # The shopper puts one more of the ordered product in the cart before the reconciler runs.
        await s.storage.customers.add_to_cart(c.id, p["_id"], 1)
        cart_now = (await s.storage.customers.get(c.id))["cart"]
        report = await reservations.reconcile(s.storage)
        assert report.committed == [key]
        order = await s.storage.orders.get(key)
        assert order["stock"] == "committed"
        cart = (await s.storage.customers.get(c.id))["cart"]
        if point == "cart_cleared":  # already out of the cart: not taken out twice
            assert cart == cart_now == {str(p["_id"]): 1}
        else:  # the ordered quantities leave, the one added since stays
            assert cart == {str(p["_id"]): 1}
        assert [(await s.storage.products.get(x["_id"]))["holds"] for x in (p, q)] == [{}, {}]
        assert [(await s.storage.products.get(x["_id"]))["stock"] for x in (p, q)] == [3, 4]
        assert not await reservations.reconcile(s.storage)
        await assert_stock_invariant(s.storage)
        # The interrupted checkout released its lock: the shopper can check out again.
        assert (await c.checkout(kit.DIRECT, kit.FLAT)).status == 200


@pytest.mark.gen_test
async def test_periodic_reconciler_scans_for_orphan_markers_at_start_and_then_seldom(monkeypatch):
    async with shop() as s:
        scans = []
        real = s.storage.products.all_holds

        async def counted():
            scans.append(1)
            return await real()

        monkeypatch.setattr(s.storage.products, "all_holds", counted)
        reconciler = reservations.Reconciler(s.storage, interval=3600, orphan_scan_every=3)
        await reconciler.start()  # the start-up pass
        assert len(scans) == 1
        for _ in range(5):
            await reconciler._run_once()
        assert len(scans) == 2  # passes 0 and 3 of 0..5
        await reconciler.stop()


# -- kill -9 mid-checkout, restart, reconcile

SERVER = """
import asyncio, sys
from datetime import timedelta
import checkout_fixtures as kit
from checkout_server.stock import reservations
from checkout_server.storage import Storage
from checkout_server.testing import TestShop

uri, db, point = sys.argv[1:4]

async def block():
    print("blocked", flush=True)
    await asyncio.Event().wait()

if point != "-":
    reservations.faults[point] = block
else:  # the restarted server: anything unfinished is from the killed one
    reservations.STALE_AFTER = timedelta(0)

async def main():
    async with TestShop(config=kit.CONFIG, plugins=[kit], storage=Storage.connect(uri, db)) as shop:
        print(shop.base_url, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def start_server(uri: str, db: str, point: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "CHECKOUT_PLUGINS": ""}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, uri, db, point],
                            stdout=subprocess.PIPE, env=env, text=True)
    base_url = proc.stdout.readline().strip()
    if not base_url.startswith("http://127.0.0.1:"):
        proc.kill()
        proc.wait()
        raise AssertionError(f"server did not start (exit {proc.poll()})")
    return proc, base_url


@pytest.mark.parametrize("point", ["order_inserted", "stock_reserved", "payment_started"])
@pytest.mark.gen_test(timeout=120)
async def test_server_killed_mid_checkout_restarts_consistent(embedded_uri, point):
    db = f"kill_{secrets.token_hex(4)}"
    storage = Storage.connect(embedded_uri, db)
    client = AsyncHTTPClient(force_instance=True)
    procs = []
    try:
        await storage.create_indexes()
        p = await storage.products.create({"name": "Widget", "price": 1000, "stock": 5})
        token = secrets.token_urlsafe(16)
        customer = await storage.customers.create(hash_token(token), {
            "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "phone": "+441234567890"})
        address = await storage.customers.add_address(customer["_id"], {
            "line1": "1 Analytical Way", "line2": "", "city": "London", "postal_code": "N1 1AA", "country": "GB"})
        await storage.customers.add_to_cart(customer["_id"], p["_id"], 3)

        proc, base_url = await asyncio.to_thread(start_server, embedded_uri, db, point)
        procs.append(proc)
        body = f'{{"address": {address["id"]}, "payment_method": {kit.REDIRECT}, "shipping_method": {kit.FLAT}}}'
        request = asyncio.ensure_future(client.fetch(
            f"{base_url}/api/shop/checkout/cart", method="POST", body=body, raise_error=False,
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"}))
        # The server says when the checkout reached the fault point and blocks there.
        assert (await asyncio.to_thread(proc.stdout.readline)).strip() == "blocked"
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
        with pytest.raises((HTTPClientError, OSError)):  # the connection died with the server
            await request
        assert await storage.orders.count({}) == 1  # the intent survived the crash

        restarted, base_url = await asyncio.to_thread(start_server, embedded_uri, db, "-")
        procs.append(restarted)
        # The restarted server reconciled on start-up, before serving.
        assert await storage.orders.count({}) == 0
        assert (await storage.products.get(p["_id"]))["stock"] == 5
        assert (await storage.customers.get(customer["_id"]))["cart"] == {str(p["_id"]): 3}
        await assert_stock_invariant(storage, run_reconciler=False)
        # The killed checkout's lock would answer 409 until it expires (checkout_lock.LOCK_SECONDS).
        await storage.customers.release_checkout_lock(customer["_id"])
        response = await client.fetch(
            f"{base_url}/api/shop/checkout/cart", method="POST", body=body, raise_error=False,
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
        assert response.code == 200, response.body
        await assert_stock_invariant(storage, run_reconciler=False)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        client.close()
        await storage.close()
