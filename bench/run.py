"""Checkout benchmark: a peer-shaped load and a hot product, against `checkout-server serve`.

    python bench/run.py [--workers 1,2] [--shoppers 300] [--concurrency 32]
                        [--checkouts 10000] [--hot-shoppers 300]

For each worker count it starts a fresh embedded database (nx-27017, the bench's own child)
and `checkout-server serve [--workers N]` on it, drives the service from a separate
load-generator process (bench/load.py), and measures:

- peer-shaped load: `--shoppers` shoppers, each with a 3-line cart over 20 products with
  ample stock, `--concurrency` checkouts in flight, pay on delivery, every checkout a 200:
  checkouts/s, p50/p95/p99, database round trips per checkout by command, service CPU per
  checkout and per GET /health, the database process's CPU per checkout, and how many cores
  the service, the database and the load generator each kept busy;
- memory: the service's RSS before the peer load and after `--checkouts` checkouts in all
  (the peer load plus as many more of the same shape; `--checkouts 1000` for a quick run);
- hot product: every cart holds a product with stock for a third of them: oversold units
  (must be 0; the bench exits 1 otherwise).

A phase's figures include what the service does for it right after answering (a paid
order's markers are dropped in a batch a moment later): "one checkout alone" is the
checkout's round trips plus a batch of one. CPU and RSS are read from /proc (Linux).
Round trips are counted by a pymongo command
listener that bench/counting/sitecustomize.py registers in every service process. Prints
a readable table, then the whole report as one JSON line.
Needs the first-party plugins checkout-cod and checkout-shipping-basic installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from checkout_server.plugin.web import hash_token
from checkout_server.storage import Storage
from checkout_server.storage.embedded import EmbeddedMongo, free_port

BENCH = Path(__file__).resolve().parent
CONFIG_TOML = """
[site]
currency = "EUR"
hold_minutes = 30

[[payment_methods]]
id = 1
provider = "cash_on_delivery"
title = "Pay on delivery"

[[shipping_methods]]
id = 1
provider = "flat_rate"
title = "Standard"
[shipping_methods.settings]
cost = 490
"""
PRODUCTS = 20
LINES = 3
TICKS = os.sysconf("SC_CLK_TCK")


# -- /proc readings

def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def descendants(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(mem / 2**30, 1),
            "python": platform.python_version(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


# -- the service under test

class Service:
    """`checkout-server serve` on MONGODB_URI, its processes, CPU and command counts."""

    def __init__(self, uri: str, workers: int | None, workdir: Path):
        self.port = free_port()
        self.counts_dir = workdir / "counts"
        self.counts_dir.mkdir()
        config = workdir / "checkout.toml"
        config.write_text(CONFIG_TOML)
        command = [_checkout_server(), "serve", "--port", str(self.port), "--config", str(config)]
        if workers is not None:
            command += ["--workers", str(workers)]
        env = {**os.environ, "MONGODB_URI": uri, "LOG_LEVEL": "WARNING", "BENCH_COUNTS_DIR": str(self.counts_dir),
               "CHECKOUT_DATA_DIR": str(workdir / "var"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH / "counting"), os.environ.get("PYTHONPATH")]))}
        env.pop("CHECKOUT_PLUGINS", None)  # the installed first-party plugins
        self.log = workdir / "service.log"
        with open(self.log, "wb") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.base_url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with {self.process.returncode}:\n"
                                   f"{self.log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the service did not answer /health in {timeout}s")

    def pids(self) -> list[int]:
        return descendants(self.process.pid)

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids())

    def rss(self) -> int:
        return sum(rss_bytes(pid) for pid in self.pids())

    def command_counts(self) -> dict[str, int]:
        """Database commands sent so far by every service process, by command name."""
        pids = [pid for pid in self.pids() if _is_python(pid)]
        for stale in self.counts_dir.glob("*.json"):
            stale.unlink()
        for pid in pids:
            os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if all((self.counts_dir / f"{pid}.json").exists() for pid in pids):
                break
            time.sleep(0.01)
        total: dict[str, int] = {}
        for path in self.counts_dir.glob("*.json"):
            for name, n in json.loads(path.read_text()).items():
                total[name] = total.get(name, 0) + n
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                for pid in self.pids():
                    os.kill(pid, signal.SIGKILL)
                self.process.wait()


def _checkout_server() -> str:
    beside = Path(sys.executable).with_name("checkout-server")
    return str(beside) if beside.exists() else shutil.which("checkout-server") or "checkout-server"


def serve_has_workers() -> bool:
    """Whether this `checkout-server serve` takes --workers."""
    out = subprocess.run([_checkout_server(), "serve", "--help"], capture_output=True, text=True, check=False)
    return "--workers" in out.stdout


def _is_python(pid: int) -> bool:
    try:
        return b"python" in Path(f"/proc/{pid}/cmdline").read_bytes() or \
            "python" in os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False


def difference(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before.get(name, 0) for name in sorted(after) if after[name] != before.get(name, 0)}


# -- data

async def seed_products(storage: Storage, stocks: list[int], tag: str) -> list[dict]:
    return [await storage.products.create({"name": f"{tag} product {i}", "price": 500 + 100 * i,
                                           "stock": stock, "weight": 200})
            for i, stock in enumerate(stocks)]


async def seed_shoppers(storage: Storage, carts: list[dict[int, int]]) -> list[dict]:
    """One customer per cart, with a complete profile and an address: their checkout requests."""
    async def one(cart: dict[int, int]) -> dict:
        token = secrets.token_urlsafe(16)
        doc = await storage.customers.create(hash_token(token), {
            "first_name": "Bench", "last_name": "Shopper", "email": "b@example.com", "phone": "+100"})
        address = await storage.customers.add_address(doc["_id"], {
            "line1": "1 Bench St", "line2": "", "city": "Berlin", "postal_code": "10115", "country": "DE"})
        for product, quantity in cart.items():
            await storage.customers.add_to_cart(doc["_id"], product, quantity)
        return {"method": "POST", "path": "/api/shop/checkout/cart", "token": token,
                "body": {"address": address["id"], "payment_method": 1, "shipping_method": 1}}

    requests = []
    for start in range(0, len(carts), 50):  # a few in flight: the database serialises anyway
        requests += await asyncio.gather(*(one(cart) for cart in carts[start:start + 50]))
    return requests


def peer_carts(n: int, products: list[dict], rng: random.Random) -> list[dict[int, int]]:
    return [{p["_id"]: rng.randint(1, 2) for p in rng.sample(products, LINES)} for _ in range(n)]


def hot_carts(n: int, products: list[dict], rng: random.Random) -> list[dict[int, int]]:
    carts = []
    for _ in range(n):
        cart = {products[0]["_id"]: 1}
        cart.update({p["_id"]: rng.randint(1, 2) for p in rng.sample(products[1:], LINES - 1)})
        carts.append(cart)
    return carts


async def verify_stock(storage: Storage) -> dict:
    """Oversold units and ledger mismatches (received == stock + units of live orders)."""
    oversold = mismatched = sold = 0
    held: dict[int, int] = {}
    for order in await storage.orders.holding_units(limit=10**7):
        for product, quantity in order.lines.items():
            held[product] = held.get(product, 0) + quantity
    for product in await storage.products.all():
        units = held.get(product["_id"], 0)
        sold += units
        if product["stock"] < 0 or units > product["received"]:
            oversold += max(-product["stock"], units - product["received"])
        if product["received"] != product["stock"] + units:
            mismatched += 1
    return {"oversold_units": oversold, "ledger_mismatches": mismatched, "units_sold": sold}


async def db_ceiling(storage: Storage, concurrency: int, seconds: float = 3.0) -> float:
    """Simple ops/s the database itself sustains: find_one by _id from `concurrency` tasks."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker():
        nonlocal done
        while time.perf_counter() < deadline:
            await storage.products.get(1)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


# -- load

async def load(base_url: str, concurrency: int, requests: list[dict]) -> dict:
    """Run `requests` from the load-generator process: elapsed, statuses, latencies, its CPU."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(BENCH / "load.py"), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
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


class Phase:
    """CPU of the service, the database and the load generator, and commands, over one load."""

    def __init__(self, service: Service, db_pid: int):
        self.service, self.db_pid = service, db_pid

    async def run(self, concurrency: int, requests: list[dict]) -> dict:
        commands0 = self.service.command_counts()
        service0, db0 = self.service.cpu(), cpu_seconds(self.db_pid)
        result = await load(self.service.base_url, concurrency, requests)
        # The work that follows the answers (paid orders are finished in batches a moment
        # later) belongs to this load too.
        await asyncio.sleep(0.3)
        service_cpu, db_cpu = self.service.cpu() - service0, cpu_seconds(self.db_pid) - db0
        commands = difference(self.service.command_counts(), commands0)
        n, elapsed = len(requests), result["elapsed"]
        lat = result["latencies_ms"]
        return {
            "requests": n, "statuses": result["statuses"], "elapsed_s": round(elapsed, 2),
            "per_s": round(n / elapsed, 1),
            "p50_ms": round(percentile(lat, 0.50), 1), "p95_ms": round(percentile(lat, 0.95), 1),
            "p99_ms": round(percentile(lat, 0.99), 1),
            "db_round_trips": round(sum(commands.values()) / n, 2),
            "db_round_trips_by_command": {name: round(c / n, 2) for name, c in commands.items()},
            "service_cpu_ms": round(service_cpu / n * 1000, 3),
            "db_cpu_ms": round(db_cpu / n * 1000, 3),
            # Cores kept busy during the load (the machine has os.cpu_count()).
            "cores_busy": {"service": round(service_cpu / elapsed, 2), "database": round(db_cpu / elapsed, 2),
                           "load_generator": round(result["cpu_s"] / elapsed, 2)},
            "load_generator_cpu_share": round(result["cpu_s"] / (elapsed * os.cpu_count()), 3),
        }


async def run_one(args, workers: int, pass_workers: bool) -> dict:
    rng = random.Random(7)
    workdir = Path(tempfile.mkdtemp(prefix=f"checkout-bench-w{workers}-"))
    embedded = EmbeddedMongo(workdir / "db")
    uri = embedded.start()
    db_pid = embedded.process.pid  # the nx-27017 server itself (its launcher execs it)
    storage = Storage.connect(uri.replace("/?", "/bench?"), maxPoolSize=args.concurrency + 10)
    service = None
    try:
        await storage.create_indexes()
        peer_products = await seed_products(storage, [10**7] * PRODUCTS, "Peer")
        hot_stock = max(1, args.hot_shoppers // 3)
        hot_products = await seed_products(storage, [hot_stock] + [10**7] * (PRODUCTS - 1), "Hot")
        more = max(0, args.checkouts - args.shoppers)
        seeded = time.perf_counter()
        warmup = await seed_shoppers(storage, peer_carts(50, peer_products, rng))
        peer = await seed_shoppers(storage, peer_carts(args.shoppers, peer_products, rng))
        rest = await seed_shoppers(storage, peer_carts(more, peer_products, rng))
        hot = await seed_shoppers(storage, hot_carts(args.hot_shoppers, hot_products, rng))
        seed_seconds = time.perf_counter() - seeded

        service = Service(uri.replace("/?", "/bench?"), workers if pass_workers else None, workdir)
        service.wait_ready()
        phase = Phase(service, db_pid)
        # Warm up (imports, pools, caches), then one checkout alone for its exact round trips.
        await load(service.base_url, 8, warmup[1:] + [{"method": "GET", "path": "/health"}] * 200)
        single = await phase.run(1, warmup[:1])
        health = await phase.run(args.concurrency, [{"method": "GET", "path": "/health"}] * max(1000, args.shoppers))
        rss_before = service.rss()
        peer_result = await phase.run(args.concurrency, peer)
        rest_result = await phase.run(args.concurrency, rest) if rest else None
        rss_after = service.rss()
        hot_result = await phase.run(args.concurrency, hot)
        processes = len(service.pids())
        service.stop()
        stock = await verify_stock(storage)
        ceiling = await db_ceiling(storage, args.concurrency)
        report = {
            "workers": workers, "service_processes": processes,
            "single_checkout": {"statuses": single["statuses"], "db_round_trips": single["db_round_trips"],
                                "by_command": single["db_round_trips_by_command"]},
            "health": {k: health[k] for k in ("requests", "statuses", "per_s", "p50_ms", "p99_ms",
                                              "service_cpu_ms", "cores_busy")},
            "peer": peer_result,
            "cpu_ratio_checkout_to_health": round(peer_result["service_cpu_ms"] / health["service_cpu_ms"], 2)
            if health["service_cpu_ms"] else None,
            "p99_over_p50": round(peer_result["p99_ms"] / peer_result["p50_ms"], 2) if peer_result["p50_ms"] else None,
            "rss": {"checkouts": args.shoppers + more, "before_mib": round(rss_before / 2**20, 1),
                    "after_mib": round(rss_after / 2**20, 1),
                    "growth_pct": round((rss_after - rss_before) / rss_before * 100, 1) if rss_before else None,
                    "more_checkouts": {k: rest_result[k] for k in ("requests", "statuses", "per_s", "p50_ms",
                                                                   "p99_ms")} if rest_result else None},
            "hot": {**{k: hot_result[k] for k in ("requests", "statuses", "per_s", "p50_ms", "p99_ms",
                                                  "db_round_trips")}, **stock},
            "db_ceiling_ops_per_s": round(ceiling, 1),
            "db_utilisation": round(peer_result["per_s"] * peer_result["db_round_trips"] / ceiling, 3),
            "seed_s": round(seed_seconds, 1),
        }
        return report
    finally:
        if service is not None:
            service.stop()
        await storage.close()
        embedded.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def main(args) -> dict:
    started_on = machine()
    has_workers = serve_has_workers()
    wanted = [int(w) for w in args.workers.split(",")]
    runs, skipped = [], []
    for workers in wanted:
        if workers != 1 and not has_workers:
            skipped.append(workers)
            continue
        runs.append(await run_one(args, workers, has_workers))
    report = {"machine": started_on, "backend": "embedded nx-27017",
              "shoppers": args.shoppers, "concurrency": args.concurrency, "lines": LINES, "products": PRODUCTS,
              "runs": runs}
    if skipped:
        report["skipped_workers"] = {"workers": skipped, "why": "this checkout-server serve has no --workers"}
    report["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def table(report: dict) -> str:
    runs = report["runs"]
    m = report["machine"]
    rows: list[tuple[str, ...]] = [("", *(f"workers {r['workers']}" for r in runs))]

    def row(label, get):
        rows.append((label, *(str(get(r)) for r in runs)))

    row("one checkout alone: round trips", lambda r: r["single_checkout"]["db_round_trips"])
    row("  by command", lambda r: " ".join(f"{k} {v:g}" for k, v in r["single_checkout"]["by_command"].items()))
    row("peer: checkouts/s", lambda r: r["peer"]["per_s"])
    row("peer: statuses", lambda r: r["peer"]["statuses"])
    row("peer: p50 / p95 / p99 ms", lambda r: f"{r['peer']['p50_ms']} / {r['peer']['p95_ms']} / {r['peer']['p99_ms']}")
    row("peer: p99 / p50", lambda r: r["p99_over_p50"])
    row("peer: round trips / checkout", lambda r: r["peer"]["db_round_trips"])
    row("  by command", lambda r: " ".join(f"{k} {v:g}" for k, v in r["peer"]["db_round_trips_by_command"].items()))
    row("service CPU ms / checkout", lambda r: r["peer"]["service_cpu_ms"])
    row("service CPU ms / health", lambda r: r["health"]["service_cpu_ms"])
    row("  checkout / health", lambda r: r["cpu_ratio_checkout_to_health"])
    row("database CPU ms / checkout", lambda r: r["peer"]["db_cpu_ms"])
    row("cores busy: service/db/load", lambda r: "{service} / {database} / {load_generator}".format(
        **r["peer"]["cores_busy"]))
    row("load generator CPU share", lambda r: r["peer"]["load_generator_cpu_share"])
    row("db ceiling ops/s; utilisation", lambda r: f"{r['db_ceiling_ops_per_s']}; {r['db_utilisation']}")
    row("RSS MiB before / after", lambda r: f"{r['rss']['before_mib']} / {r['rss']['after_mib']} "
                                            f"({r['rss']['checkouts']} checkouts, {r['rss']['growth_pct']:+}%)")
    row("hot: statuses", lambda r: r["hot"]["statuses"])
    row("hot: checkouts/s, p99 ms", lambda r: f"{r['hot']['per_s']}, {r['hot']['p99_ms']}")
    row("hot: oversold, mismatches", lambda r: f"{r['hot']['oversold_units']}, {r['hot']['ledger_mismatches']}")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}; "
              f"load average {m['load_avg_at_start']} -> {m['load_avg_at_end']}"),
             (f"backend: {report['backend']}; {report['shoppers']} shoppers x {report['lines']}-line carts over "
              f"{report['products']} products, {report['concurrency']} in flight, pay on delivery")]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    if "skipped_workers" in report:
        lines.append(f"not run: workers {report['skipped_workers']['workers']}: "
                     f"{report['skipped_workers']['why']}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated (default 1,2)")
    parser.add_argument("--shoppers", type=int, default=300, help="shoppers in the peer-shaped load")
    parser.add_argument("--concurrency", type=int, default=32, help="checkouts in flight")
    parser.add_argument("--checkouts", type=int, default=10_000,
                        help="checkouts in all for the RSS figure (default 10000)")
    parser.add_argument("--hot-shoppers", type=int, default=300, help="shoppers in the hot-product phase")
    args = parser.parse_args()
    result = asyncio.run(main(args))
    print(table(result))
    print(json.dumps(result, separators=(",", ":")))
    if any(r["hot"]["oversold_units"] or r["hot"]["ledger_mismatches"] for r in result["runs"]):
        sys.exit(1)
