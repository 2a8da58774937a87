"""Three `serve` instances on one database (MONGODB_URI to a separately started nx-27017,
or the real MongoDB the environment names), sweepers and reconcilers running in all three.

Checkouts of every kind, returns, Stripe webhooks and hold expiries are spread over the
instances: no unit is oversold, every order leaves HOLD at most once, units go back once.
"""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import timedelta

import pytest
from fault_checks import check_database
from fault_shoppers import SCENARIOS, Ledger, Shopper
from live import (
    DEMO_METHODS,
    Service,
    checkout_server_command,
    free_port,
    make_customer,
    make_product,
    request,
    site_config,
    uri_with_database,
)

from checkout_server.storage import Storage
from checkout_server.storage.embedded import EmbeddedMongo

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals and /proc")

INSTANCES = 3
WEBHOOK_SECRET = "whsec_instances"


@pytest.fixture
def database(tmp_path_factory):
    """The database all instances share: MONGODB_URI when set, else a fresh nx-27017."""
    if os.environ.get("MONGODB_URI"):
        from pymongo import MongoClient
        from pymongo.uri_parser import parse_uri

        uri = os.environ["MONGODB_URI"]
        name = f"checkout_instances_{os.getpid()}"
        uri_with_db = uri_with_database(uri, name)
        yield uri_with_db
        client = MongoClient(uri)
        client.drop_database(name)
        client.close()
        assert parse_uri(uri_with_db)["database"] == name
        return
    server = EmbeddedMongo(tmp_path_factory.mktemp("shared-db"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def stripe_fake(tmp_path):
    pytest.importorskip("checkout_stripe", reason="pip install -r requirements.txt")
    port = free_port()
    with open(tmp_path / "stripe-fake.log", "wb") as log:
        env = {k: v for k, v in os.environ.items() if k != "CHECKOUT_PLUGINS"}
        process = subprocess.Popen([*checkout_server_command(), "fake-gateway", "stripe", "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/__fake__/webhook", timeout=2)
            except urllib.error.HTTPError:
                break  # it answers (a GET there is a 405)
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "stripe-fake.log").read_text()
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _methods(stripe_url: str) -> str:
    return DEMO_METHODS + f"""
[[payment_methods]]
id = 3
provider = "stripe"
[payment_methods.settings]
secret_key = "sk_test_instances"
sandbox = true
base_url = "{stripe_url}"
webhook_secret = "{WEBHOOK_SECRET}"
"""


async def _expire_holds_now(uri: str) -> int:
    """Move every waiting order's hold end into the past, so the sweepers take them."""
    from checkout_server import clock

    storage = Storage.connect(uri, "checkout")
    try:
        orders = await storage.orders.find({"status": "HOLD"}, limit=100_000)
        past = clock.utcnow() - timedelta(minutes=1)
        for order in orders:
            await storage.orders.collection.update_one({"_id": order.key, "status": "HOLD"},
                                                       {"$set": {"hold_until": past}})
        return len(orders)
    finally:
        await storage.close()


async def _orders(uri: str) -> list[dict]:
    storage = Storage.connect(uri, "checkout")
    try:
        return await storage.orders.find({}, limit=1_000_000)
    finally:
        await storage.close()


def test_three_instances_on_one_database(tmp_path, database, stripe_fake):
    import asyncio

    for name in ("checkout_cod", "checkout_sandbox", "checkout_shipping_basic"):
        pytest.importorskip(name, reason="pip install -r requirements.txt")
    ports = [free_port() for _ in range(INSTANCES)]
    services = [Service(tmp_path / f"instance{n}", port=port, config=site_config(port, _methods(stripe_fake)),
                        env={"MONGODB_URI": database, "CHECKOUT_SWEEP_SECONDS": "1"})
                for n, port in enumerate(ports)]
    # The fake delivers its webhooks to the second instance; returns go to whichever
    # instance started the checkout.
    body = json.dumps({"url": f"http://127.0.0.1:{ports[1]}/api/shop/checkout/notify/3",
                       "secret": WEBHOOK_SECRET}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{stripe_fake}/__fake__/webhook", data=body,
                                                  headers={"Content-Type": "application/json"}), timeout=10)
    ledger, stopping = Ledger(), threading.Event()
    try:
        for service in services:
            service.start(wait=False)
        for service in services:
            service.wait_healthy()
        products = [make_product(ports[0], f"Product {n}", stock=100_000) for n in range(3)]
        products.append(make_product(ports[1], "Scarce", stock=25))
        customers = [make_customer(ports[n % INSTANCES], f"Shopper{n}") for n in range(6)]
        customer_ids = [request(ports[0], "GET", "/api/shop/profile", token=token)[2]["id"]
                        for token, _ in customers]
        shoppers = [Shopper(ports, token, address, products, ledger, stopping, seed=n,
                            scenarios=(*SCENARIOS, "stripe", "stripe"))
                    for n, (token, address) in enumerate(customers)]
        for shopper in shoppers:
            shopper.start()
        deadline = time.monotonic() + 60
        while sum(ledger.checkouts.values()) < 40 and time.monotonic() < deadline and not ledger.errors:
            time.sleep(0.1)
        stopping.set()
        for shopper in shoppers:
            shopper.join(60)
        assert not ledger.errors, "\n".join(ledger.errors)
        assert {"direct", "paid", "cancelled", "abandoned", "stripe"} <= set(ledger.checkouts), ledger

        # Every waiting order expires now: the three sweepers race for each one.
        assert asyncio.run(_expire_holds_now(database)) > 0
        deadline = time.monotonic() + 30
        while any(o.status == "HOLD" for o in asyncio.run(_orders(database))) and time.monotonic() < deadline:
            time.sleep(0.2)
        orders = asyncio.run(_orders(database))
        assert not [o.key for o in orders if o.status == "HOLD"], "holds left after expiry"
        for key, statuses in ledger.orders.items():
            if statuses == {"HOLD"}:  # abandoned: expired since
                ledger.orders[key] = {"CANCELLED"}
            elif "HOLD" in statuses:
                ledger.orders[key] = statuses - {"HOLD"}
        for service in services:
            service.signal(15)
        assert [service.process.wait(60) for service in services] == [0] * INSTANCES
    finally:
        stopping.set()
        for service in services:
            service.kill()

    problems = check_database(database, ledger, customer_ids)
    for order in orders:
        left = [step["status"] for step in order.history if step["status"] != "HOLD"]
        if len(left) != 1:
            problems.append(f"order {order.key}: left HOLD {len(left)} times ({left})")
    assert not problems, "\n".join(problems)
    logs = "".join(service.log() for service in services)
    assert "Traceback" not in logs
