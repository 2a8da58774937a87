"""Config reload (SIGHUP): an atomic swap; a bad file keeps the old methods."""

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from checkout_server.cli import reload_config
from checkout_server.plugin.hookspecs import hookimpl
from checkout_server.plugin.providers import (
    PaymentProvider,
    PaymentStart,
    ShippingProvider,
)
from checkout_server.testing import TestShop


class Gate(PaymentProvider):
    """A redirect payment whose start() waits until the test opens the gate."""

    name = "gate"
    flow = "redirect"
    entered: asyncio.Event
    gate: asyncio.Event
    closed: list

    async def start(self, order, urls):
        Gate.entered.set()
        await Gate.gate.wait()
        return PaymentStart(redirect_url=f"https://pay.test/{self.method.title}", reference="r1")

    async def close(self):
        Gate.closed.append(self.method.title)


class Parcel(ShippingProvider):
    name = "parcel"

    def quote(self, cart, address):
        return 500


class FailingStartup(ShippingProvider):
    name = "failing_startup"

    async def startup(self):
        raise ConnectionError("gateway unreachable")

    def quote(self, cart, address):
        return 0


class ReloadPlugin:
    @hookimpl
    def register_payment_providers(self, register):
        register(Gate)

    @hookimpl
    def register_shipping_providers(self, register):
        register(Parcel)
        register(FailingStartup)


BEFORE = {
    "payment_methods": [{"id": 1, "provider": "gate", "title": "Old gate"}],
    "shipping_methods": [{"id": 1, "provider": "parcel", "title": "Parcel"}],
}
AFTER = """
[[payment_methods]]
id = 2
provider = "gate"
title = "New gate"

[[shipping_methods]]
id = 1
provider = "parcel"
title = "Parcel"
"""


def after(shop, **site) -> str:
    """AFTER with the running shop's [site] (a reload falling back to defaults is refused)."""
    fields = {"base_url": shop.base_url, **site}
    return "[site]\n" + "".join(f'{name} = "{value}"\n' for name, value in fields.items()) + AFTER


@pytest.fixture(autouse=True)
def gate():
    Gate.entered, Gate.gate, Gate.closed = asyncio.Event(), asyncio.Event(), []


def args_for(path):
    return argparse.Namespace(config=str(path), demo=False)


async def payment_ids(shop):
    r = await shop.admin("GET", "/api/admin/plugins")
    return [(m["id"], m["title"]) for m in r.body["methods"] if m["kind"] == "payment"]


@pytest.mark.gen_test
async def test_reload_swaps_in_the_changed_file(tmp_path, caplog):
    path = tmp_path / "checkout.toml"
    async with TestShop(config=BEFORE, plugins=[ReloadPlugin()]) as shop:
        path.write_text(after(shop))
        assert await payment_ids(shop) == [(1, "Old gate")]
        with caplog.at_level(logging.INFO, "checkout_server"):
            assert await reload_config(shop.app, args_for(path)) is True
        assert "config reloaded" in caplog.text
        assert await payment_ids(shop) == [(2, "New gate")]
        product = await shop.product()
        customer = await shop.customer(cart={product["_id"]: 1})
        r = await customer.request("GET", f"/api/shop/checkout/methods?address={customer.address_id}")
        assert [m["id"] for m in r.body["payment_methods"]] == [2]


@pytest.mark.gen_test
@pytest.mark.parametrize("text, named", [
    ("[[payment_methods]]\nid = 1\nprovider = 'bitcoin'\n", "payment method 1: provider"),
    ("[[payment_methods]]\nid = 1\nprovider = 'gate'\nactive = 'yes'\n", "payment method 1: active"),
    ("[[payment_methods]\n", "not valid TOML"),
    (("[[payment_methods]]\nid = 1\nprovider = 'gate'\n"
      "[[shipping_methods]]\nid = 3\nprovider = 'failing_startup'\n"), "gateway unreachable"),
])
async def test_a_bad_file_is_refused_and_the_old_methods_stay(tmp_path, caplog, text, named):
    path = tmp_path / "checkout.toml"
    async with TestShop(config=BEFORE, plugins=[ReloadPlugin()]) as shop:
        path.write_text(f'[site]\nbase_url = "{shop.base_url}"\n' + text)
        old = shop.methods
        with caplog.at_level(logging.ERROR, "checkout_server"):
            assert await reload_config(shop.app, args_for(path)) is False
        assert shop.methods is old
        assert "config reload refused" in caplog.text and named in caplog.text
        assert await payment_ids(shop) == [(1, "Old gate")]


@pytest.mark.gen_test
async def test_a_file_with_another_currency_is_refused(tmp_path, caplog):
    # Prices carry no currency: a new one would reprice the catalog and every cart silently.
    path = tmp_path / "checkout.toml"
    async with TestShop(config=BEFORE, plugins=[ReloadPlugin()]) as shop:
        path.write_text(after(shop, currency="USD"))
        old = shop.methods
        with caplog.at_level(logging.ERROR, "checkout_server"):
            assert await reload_config(shop.app, args_for(path)) is False
        assert shop.methods is old and old.site.currency == "EUR"
        assert "config reload refused" in caplog.text
        assert "currency cannot change while running: restart the service after repricing" in caplog.text
        assert await payment_ids(shop) == [(1, "Old gate")]
        # The same currency, spelled in lower case, is no change.
        path.write_text(after(shop, currency="eur"))
        assert await reload_config(shop.app, args_for(path)) is True
        assert await payment_ids(shop) == [(2, "New gate")]


@pytest.mark.gen_test
@pytest.mark.parametrize("text, named", [
    ("", "the file is empty"),  # truncated to nothing during a deploy
    ("# checkout.toml\n", "the file is empty"),
    ("[[shipping_methods]]\nid = 1\nprovider = 'parcel'\n", "no [[payment_methods]] left"),
    (AFTER, "[site] base_url would fall back to its default http://localhost:8888"),  # [site] vanished
])
async def test_a_reload_that_would_empty_the_shop_is_refused(tmp_path, caplog, text, named):
    path = tmp_path / "checkout.toml"
    path.write_text(text)
    async with TestShop(config=BEFORE, plugins=[ReloadPlugin()]) as shop:
        old = shop.methods
        with caplog.at_level(logging.ERROR, "checkout_server"):
            assert await reload_config(shop.app, args_for(path)) is False
        assert shop.methods is old and "config reload refused" in caplog.text and named in caplog.text
        assert await payment_ids(shop) == [(1, "Old gate")]


@pytest.mark.gen_test
async def test_a_missing_file_is_refused(tmp_path):
    async with TestShop(config=BEFORE, plugins=[ReloadPlugin()]) as shop:
        old = shop.methods
        assert await reload_config(shop.app, args_for(tmp_path / "gone.toml")) is False
        assert shop.methods is old


@pytest.mark.gen_test
async def test_a_checkout_in_flight_finishes_on_the_table_it_started_with(tmp_path):
    path = tmp_path / "checkout.toml"
    async with TestShop(config=BEFORE, plugins=[ReloadPlugin()]) as shop:
        path.write_text(after(shop))  # method 1 disappears
        product = await shop.product()
        customer = await shop.customer(cart={product["_id"]: 1})
        in_flight = asyncio.ensure_future(customer.checkout(payment_method=1, shipping_method=1))
        await asyncio.wait_for(Gate.entered.wait(), 30)
        assert await reload_config(shop.app, args_for(path)) is True
        assert Gate.closed == []  # the old provider is still open for the checkout using it
        Gate.gate.set()
        r = await in_flight
        assert r.status == 200 and r.body == {"next_step": "https://pay.test/Old gate"}
        # A new checkout sees the new table: method 1 is gone.
        again = await shop.customer(cart={product["_id"]: 1})
        r = await again.checkout(payment_method=1, shipping_method=1)
        assert r.status == 400
    assert sorted(Gate.closed) == ["New gate", "Old gate"]  # shutdown closes old and new


@pytest.mark.gen_test
async def test_retired_providers_are_closed_after_the_grace_period(tmp_path):
    path = tmp_path / "checkout.toml"
    async with TestShop(config=BEFORE, plugins=[ReloadPlugin()]) as shop:
        path.write_text(after(shop))
        shop.app.method_registry.CLOSE_GRACE_SECONDS = 0
        closed = asyncio.Event()
        original = Gate.close

        async def close_and_tell(self):
            await original(self)
            closed.set()

        Gate.close = close_and_tell
        try:
            assert await reload_config(shop.app, args_for(path)) is True
            await asyncio.wait_for(closed.wait(), 10)
            assert Gate.closed == ["Old gate"]
        finally:
            Gate.close = original
    assert Gate.closed == ["Old gate", "New gate"]  # each exactly once


# -- the real thing: SIGHUP to a running `checkout-server serve`

SERVED_BEFORE = """
[[shipping_methods]]
id = 1
provider = "flat_rate"
title = "Standard"
settings = { cost = 490 }
"""
SERVED_AFTER = SERVED_BEFORE + """
[[shipping_methods]]
id = 2
provider = "store_pickup"
title = "Pick up"
"""


def _checkout_server() -> list[str]:
    """The installed console script, as an admin runs it."""
    script = shutil.which("checkout-server", path=os.path.dirname(sys.executable))
    if script:
        return [script]
    return [sys.executable, "-c", "import sys; from checkout_server.cli import main; sys.exit(main())"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url, token=None):
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def _poll(deadline, probe):
    """Call probe() until it returns a truthy value or the deadline passes."""
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except OSError as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting; last answer: {last!r}")


def _shipping_titles(base):
    body = _get(f"{base}/api/admin/plugins", token="sighup-admin")
    return [m["title"] for m in body["methods"] if m["kind"] == "shipping"]


def test_sighup_reloads_a_running_server(tmp_path):
    pytest.importorskip("checkout_shipping_basic", reason="pip install -r requirements.txt")
    config = tmp_path / "checkout.toml"
    config.write_text(SERVED_BEFORE)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("CHECKOUT_PLUGINS", "MONGODB_URI")}
    env.update(CHECKOUT_DATA_DIR=str(tmp_path / "var"), CHECKOUT_ADMIN_TOKEN="sighup-admin")
    with open(tmp_path / "server.log", "wb") as log:
        server = subprocess.Popen(
            [*_checkout_server(), "serve", "--port", str(port), "--config", str(config)],
            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        _poll(deadline, lambda: _get(f"{base}/health") == {"status": "ok"})
        assert _shipping_titles(base) == ["Standard"]

        config.write_text("[[shipping_methods]]\nid = 1\nprovider = 'nope'\n")
        server.send_signal(signal.SIGHUP)
        _poll(deadline, lambda: b"config reload refused" in (tmp_path / "server.log").read_bytes())
        assert _shipping_titles(base) == ["Standard"]

        config.write_text(SERVED_AFTER)
        server.send_signal(signal.SIGHUP)
        assert _poll(deadline, lambda: _shipping_titles(base) == ["Standard", "Pick up"])
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    assert code == 0, (tmp_path / "server.log").read_text()
