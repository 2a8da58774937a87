"""Crash test: SIGKILL a real `serve` at random moments under checkout load, restart it,
reconcile, and check that nothing was lost or counted twice.

Default: 5 kills (well under a minute). `CHECKOUT_CRASH_KILLS=50` for a long run;
`CHECKOUT_CRASH_SEED` replays a run (the seed is printed on failure). With `MONGODB_URI`
set, the service runs on that database (a fresh database name on it) instead of the
embedded one.
"""

import os
import random
import sys
import threading
import time

import pytest
from fault_checks import check_database
from fault_shoppers import Ledger, Shopper
from live import Service, make_customer, make_product, request, uri_with_database

from checkout_server.storage.embedded import EmbeddedMongo

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals and /proc")

KILLS = int(os.environ.get("CHECKOUT_CRASH_KILLS", "5"))
SHOPPERS = 6


@pytest.fixture
def demo_providers():
    for name in ("checkout_cod", "checkout_sandbox", "checkout_shipping_basic"):
        pytest.importorskip(name, reason="pip install -r requirements.txt")


def replay_keyed(port: int, ledger: Ledger) -> list[str]:
    """Every keyed checkout, sent again now (after the kills): the first answer, exactly."""
    problems = []
    for token, key, body, status, answer in ledger.keyed:
        again = request(port, "POST", "/api/shop/checkout/cart", token=token, body=body,
                        headers={"Idempotency-Key": key})
        if (again[0], again[2]) != (status, answer):
            problems.append(f"key {key}: first {status} {answer}, now {again[0]} {again[2]}")
    return problems


@pytest.mark.usefixtures("demo_providers")
def test_sigkill_under_checkout_load_loses_nothing(tmp_path):
    seed = int(os.environ.get("CHECKOUT_CRASH_SEED", random.randrange(1 << 30)))
    chance = random.Random(seed)
    real = os.environ.get("MONGODB_URI")
    uri = uri_with_database(real, f"checkout_crash_{os.getpid()}") if real else None
    service = Service(tmp_path, workers=int(os.environ.get("CHECKOUT_CRASH_WORKERS", "1")),
                      env={"MONGODB_URI": uri} if uri else None).start()
    ledger, stopping = Ledger(), threading.Event()
    shoppers = []
    try:
        # Ample stock for most products; one scarce product, so some checkouts run out.
        products = [make_product(service.port, f"Product {n}", stock=100_000) for n in range(4)]
        products.append(make_product(service.port, "Scarce", stock=40))
        customers = [make_customer(service.port, f"Shopper{n}") for n in range(SHOPPERS)]
        customer_ids = [request(service.port, "GET", "/api/shop/profile", token=token)[2]["id"]
                        for token, _ in customers]
        shoppers = [Shopper([service.port], token, address, products, ledger, stopping, seed + n)
                    for n, (token, address) in enumerate(customers)]
        for shopper in shoppers:
            shopper.start()
        for _ in range(KILLS):
            time.sleep(chance.uniform(0.3, 2.0))  # a random moment of the load
            service.kill()
            service.start()
        time.sleep(1.0)  # some load on the last restart too
        stopping.set()
        for shopper in shoppers:
            shopper.join(60)
        assert not ledger.errors, f"seed {seed}:\n" + "\n".join(ledger.errors)
        assert sum(ledger.checkouts.values()) >= KILLS, f"seed {seed}: hardly any checkout got through"
        assert not replay_keyed(service.port, ledger), f"seed {seed}"
        assert service.stop() == 0
    finally:
        stopping.set()
        service.kill()

    if uri:
        problems = check_database(uri, ledger, customer_ids)
        _drop_database(real, uri)
    else:
        database = EmbeddedMongo(service.data_dir)
        try:
            problems = check_database(database.start(), ledger, customer_ids)
        finally:
            database.stop()
    assert not problems, f"seed {seed}, {KILLS} kills, acknowledged {ledger.checkouts}:\n" + "\n".join(problems)
    assert service.log().count("--- start") == KILLS + 1


def _drop_database(uri: str, with_database: str) -> None:
    from pymongo import MongoClient
    from pymongo.uri_parser import parse_uri

    client = MongoClient(uri)
    try:
        client.drop_database(parse_uri(with_database)["database"])
    finally:
        client.close()

