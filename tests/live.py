"""A real `checkout-server serve` in a subprocess, and a small HTTP client for it.

For the tests that need the process itself: signals, workers, the embedded database's
supervision, crashes. Everything listens on loopback and is stopped by the test.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

ADMIN_TOKEN = "live-admin"

DEMO_METHODS = """
[[payment_methods]]
id = 1
provider = "cash_on_delivery"
title = "Pay on delivery"

[[payment_methods]]
id = 2
provider = "sandbox"
title = "Sandbox card"

[[shipping_methods]]
id = 1
provider = "flat_rate"
title = "Standard"
[shipping_methods.settings]
cost = 490
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def site_config(port: int, methods: str = DEMO_METHODS, **site) -> str:
    """A config whose URLs point at this port (the sandbox reaches itself through base_url)."""
    fields = {"currency": "EUR", "base_url": f"http://127.0.0.1:{port}",
              "return_url": f"http://127.0.0.1:{port}/sandbox/result/{{order_key}}?payment={{result}}", **site}
    lines = [f"{k} = {json.dumps(v)}" for k, v in fields.items()]
    return "[site]\n" + "\n".join(lines) + "\n" + methods


def uri_with_database(uri: str, name: str) -> str:
    """`uri` naming the database `name` (its hosts and options kept)."""
    scheme, _, rest = uri.partition("://")
    hosts, _, tail = rest.partition("/")
    _, _, query = tail.partition("?")
    return f"{scheme}://{hosts}/{name}" + (f"?{query}" if query else "")


def checkout_server_command() -> list[str]:
    exe = Path(sys.executable).with_name("checkout-server")
    return ([str(exe)] if exe.exists() else
            [sys.executable, "-c", "import sys; from checkout_server.cli import main; sys.exit(main())"])


class Service:
    """One `serve` process (restartable on the same data, port and config)."""

    def __init__(self, workdir: Path, *, port: int | None = None, config: str | None = None,
                 workers: int = 1, env: dict | None = None, data_dir: Path | None = None,
                 extra_args: list[str] | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.data_dir = data_dir or self.workdir / "var"
        self.config_path = self.workdir / "checkout.toml"
        self.config_path.write_text(config if config is not None else site_config(self.port))
        self.workers = workers
        self.extra_env = env or {}
        self.extra_args = extra_args or []
        self.process: subprocess.Popen | None = None
        self.log_path = self.workdir / "service.log"
        self.starts = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> Service:
        env = {k: v for k, v in os.environ.items()
               if k not in ("CHECKOUT_PLUGINS", "MONGODB_URI", "CHECKOUT_CONFIG", "PORT", "HOST")}
        env.update(CHECKOUT_DATA_DIR=str(self.data_dir), CHECKOUT_ADMIN_TOKEN=ADMIN_TOKEN,
                   LOG_LEVEL="INFO", **self.extra_env)
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [*checkout_server_command(), "serve", "--port", str(self.port), "--config", str(self.config_path),
                 "--workers", str(self.workers), *self.extra_args],
                cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_healthy()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                if request(self.port, "GET", "/health", timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"serve was not healthy within {timeout}s:\n{self.log()[-4000:]}")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; the exit status."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        """SIGKILL (what a crash or an OOM kill does) and wait until its port is free again."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(30)
            wait_port_closed(self.port)

    def database_pid(self) -> int:
        return int((self.data_dir / "nx-27017.pid").read_text().split()[0])


def wait_port_closed(port: int, timeout: float = 30) -> None:
    """Until nothing listens on `port` (workers die with their parent, a moment later)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"port {port} still served {timeout}s after the service was killed")


def request(port: int, method: str, path: str, *, token: str | None = None, body=None,
            headers: dict | None = None, timeout: float = 30, connection: http.client.HTTPConnection | None = None,
            form: bool = False):
    """(status, headers, parsed body) for one request; `connection` reuses a keep-alive one."""
    conn = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = f"Token {token}"
    data = None
    if body is not None:
        if form:
            data = urllib.parse.urlencode(body).encode()
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, data, all_headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return response.status, response.headers, parsed
    finally:
        if connection is None:
            conn.close()


def admin(port: int, method: str, path: str, body=None):
    return request(port, method, path, token=ADMIN_TOKEN, body=body)


def make_customer(port: int, name: str) -> tuple[str, int]:
    """A customer with a complete profile and an address: (token, address id)."""
    status, _, customer = admin(port, "POST", "/api/admin/customers", {
        "first_name": name, "last_name": "Tester", "email": f"{name.lower()}@example.com", "phone": "+44 20 7946 0000"})
    assert status == 201, customer
    status, _, address = request(port, "POST", "/api/shop/addresses", token=customer["token"], body={
        "line1": "1 Test Way", "city": "London", "postal_code": "N1 1AA", "country": "GB"})
    assert status == 201, address
    return customer["token"], address["id"]


def make_product(port: int, name: str, stock: int, price: int = 1000) -> int:
    status, _, product = admin(port, "POST", "/api/admin/products",
                               {"name": name, "price": price, "stock": stock, "weight": 100})
    assert status == 201, product
    return product["id"]


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


def worker_pids(service: Service) -> list[int]:
    """The service's HTTP workers: its children other than the embedded database."""
    database = service.database_pid() if (service.data_dir / "nx-27017.pid").exists() else None
    return [pid for pid in children(service.process.pid) if pid != database]
