"""Checkout benchmark: figures that don't depend on this machine's mood.

    python bench/run.py [--customers 300] [--concurrency 20] [--json]

Runs the service in this process on the embedded database (or MONGODB_URI), drives it from
a separate load-generator process, and reports:
- database round trips per checkout (pymongo command monitoring);
- service CPU per checkout against service CPU per GET /health;
- checkouts/s as a fraction of the database's own measured ceiling (simple ops/s) in the
  same run;
- oversold units, which must be 0 (a hot product has less stock than demand).
Needs the first-party plugins checkout-cod and checkout-shipping-basic installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path

from pymongo import monitoring
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from checkout_server.app import Application
from checkout_server.config import parse_config
from checkout_server.plugin.web import hash_token
from checkout_server.plugin.manager import make_plugin_manager
from checkout_server.storage import Storage
from checkout_server.storage.embedded import EmbeddedMongo

CONFIG = {
    "site": {"currency": "EUR", "hold_minutes": 30},
    "payment_methods": [{"id": 1, "provider": "cash_on_delivery", "title": "Pay on delivery"}],
    "shipping_methods": [{"id": 1, "provider": "flat_rate", "title": "Standard",
                          "settings": {"cost": 490}}],
}


class CommandCounter(monitoring.CommandListener):
    def __init__(self):
        self.count = 0
        self.by_name: dict[str, int] = {}

    def started(self, event):
        self.count += 1
        self.by_name[event.command_name] = self.by_name.get(event.command_name, 0) + 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


async def load(base_url: str, concurrency: int, requests: list[dict]) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("load.py")),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    job = {"base_url": base_url, "concurrency": concurrency, "requests": requests}
    out, _ = await proc.communicate(json.dumps(job).encode())
    if proc.returncode != 0:
        raise RuntimeError("load generator failed")
    return json.loads(out)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


async def db_ceiling(storage: Storage, concurrency: int, seconds: float = 3.0) -> float:
    """Simple ops/s the database itself sustains: find_one by _id from `concurrency` tasks."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker():
        nonlocal done
        while time.perf_counter() < deadline:
            await storage.db.products.find_one({"_id": 1})
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def seed(storage: Storage, customers: int, rng: random.Random):
    products = []
    for i in range(20):
        # Product 1 is hot: in every cart, with stock for only a third of them.
        stock = customers // 3 if i == 0 else customers
        products.append(await storage.products.create(
            {"name": f"Bench product {i}", "price": 500 + 100 * i, "stock": stock, "weight": 200}))
    people = []
    for _ in range(customers):
        token = secrets.token_urlsafe(16)
        doc = await storage.customers.create(hash_token(token), {
            "first_name": "Bench", "last_name": "Shopper", "email": "b@example.com", "phone": "+100"})
        addr = await storage.customers.add_address(doc["_id"], {
            "line1": "1 Bench St", "line2": "", "city": "Berlin", "postal_code": "10115", "country": "DE"})
        lines = {products[0]["_id"]: 1}
        for p in rng.sample(products[1:], 2):
            lines[p["_id"]] = rng.randint(1, 2)
        for pid, q in lines.items():
            await storage.customers.add_to_cart(doc["_id"], pid, q)
        people.append({"token": token, "address": addr["id"]})
    return people


async def verify_stock(storage: Storage) -> dict:
    oversold = 0
    mismatched = 0
    sold = 0
    orders = await storage.orders.find({"status": {"$in": ["HOLD", "PROCESSING"]}}, limit=10**7)
    held: dict[int, int] = {}
    for order in orders:
        for item in order["items"]:
            held[item["product"]] = held.get(item["product"], 0) + item["quantity"]
    for product in await storage.products.all():
        units = held.get(product["_id"], 0)
        sold += units
        if product["stock"] < 0 or units > product["received"]:
            oversold += max(-product["stock"], units - product["received"])
        if product["received"] != product["stock"] + units:
            mismatched += 1
    return {"oversold_units": oversold, "ledger_mismatches": mismatched, "units_sold": sold}


async def main(args) -> dict:
    rng = random.Random(7)
    embedded = None
    uri = os.environ.get("MONGODB_URI")
    tmp = tempfile.TemporaryDirectory(prefix="checkout-bench-")
    if not uri:
        embedded = EmbeddedMongo(tmp.name)
        uri = embedded.start()
    counter = CommandCounter()
    storage = Storage.connect(uri, f"bench_{secrets.token_hex(3)}", event_listeners=[counter],
                              maxPoolSize=args.concurrency + 10)
    os.environ.pop("CHECKOUT_PLUGINS", None)
    try:
        app = Application(storage, parse_config(CONFIG, "<bench>"),
                          plugin_manager=make_plugin_manager(), admin_token=None)
        await app.startup()
        people = await seed(storage, args.customers, rng)
        sock, port = bind_unused_port()
        server = HTTPServer(app)
        server.add_sockets([sock])
        base = f"http://127.0.0.1:{port}"

        def checkout(person):
            return {"method": "POST", "path": "/api/shop/checkout/cart", "token": person["token"],
                    "body": {"address": person["address"], "payment_method": 1,
                             "shipping_method": 1}}

        # One checkout alone: its exact round trips.
        counter.count, counter.by_name = 0, {}
        single = await load(base, 1, [checkout(people[0])])
        single_trips, single_by_name = counter.count, dict(counter.by_name)

        n_health = args.customers
        cpu0 = time.process_time()
        health = await load(base, args.concurrency, [{"method": "GET", "path": "/health"}] * n_health)
        cpu_health = (time.process_time() - cpu0) / n_health

        counter.count = 0
        cpu0 = time.process_time()
        result = await load(base, args.concurrency, [checkout(p) for p in people[1:]])
        cpu_checkout = (time.process_time() - cpu0) / (len(people) - 1)
        trips_avg = counter.count / (len(people) - 1)
        ok = result["statuses"].get("200", 0)

        server.stop()
        ceiling = await db_ceiling(storage, args.concurrency)
        checkouts_per_s = (len(people) - 1) / result["elapsed"]
        stock = await verify_stock(storage)
        await app.shutdown()
        return {
            "backend": "MONGODB_URI" if not embedded else "embedded nx-27017",
            "customers": args.customers, "concurrency": args.concurrency,
            "single_checkout": {"status": single["statuses"], "db_round_trips": single_trips,
                                "by_command": single_by_name},
            "checkout": {"requests": len(people) - 1, "statuses": result["statuses"], "ok": ok,
                         "per_s": round(checkouts_per_s, 1),
                         "p50_ms": round(percentile(result["latencies_ms"], 0.5), 1),
                         "p95_ms": round(percentile(result["latencies_ms"], 0.95), 1),
                         "db_round_trips_avg": round(trips_avg, 2),
                         "cpu_ms_per_request": round(cpu_checkout * 1000, 2)},
            "health": {"statuses": health["statuses"], "cpu_ms_per_request": round(cpu_health * 1000, 3)},
            "cpu_ratio_checkout_to_health": round(cpu_checkout / cpu_health, 1) if cpu_health else None,
            "db_ceiling_ops_per_s": round(ceiling, 1),
            "checkouts_per_s_over_db_ceiling": round(checkouts_per_s / ceiling, 4),
            "db_utilisation": round(checkouts_per_s * trips_avg / ceiling, 3),
            "stock": stock,
        }
    finally:
        storage.close()
        if embedded:
            embedded.stop()
        tmp.cleanup()


if __name__ == "__main__":
    # Warnings and errors only: an access-log line per request would drown the figures.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("tornado.access").setLevel(logging.ERROR)  # the run refuses 4xx on purpose
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(main(args))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        c = report["checkout"]
        print(f"backend: {report['backend']}, {report['customers']} customers, concurrency {report['concurrency']}")
        print(f"one checkout: {report['single_checkout']['db_round_trips']} db round trips "
              f"{report['single_checkout']['by_command']}")
        print(f"checkouts: {c['statuses']}  {c['per_s']}/s  p50 {c['p50_ms']} ms  p95 {c['p95_ms']} ms")
        print(f"db round trips per checkout (avg over run): {c['db_round_trips_avg']}")
        print(f"service CPU: checkout {c['cpu_ms_per_request']} ms, /health "
              f"{report['health']['cpu_ms_per_request']} ms -> ratio {report['cpu_ratio_checkout_to_health']}")
        print(f"db ceiling: {report['db_ceiling_ops_per_s']} ops/s; checkouts/s over ceiling: "
              f"{report['checkouts_per_s_over_db_ceiling']}; db utilisation {report['db_utilisation']}")
        print(f"stock: {report['stock']}")
        if report["stock"]["oversold_units"] or report["stock"]["ledger_mismatches"]:
            sys.exit(1)
