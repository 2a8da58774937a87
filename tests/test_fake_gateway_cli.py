"""`checkout-server fake-gateway <name>`: a plugin's fake gateway served for offline development."""

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import urllib.request

import pytest

from checkout_server.plugin.fake_gateway import collect_fake_gateways, new_app
from checkout_server.plugin.hookspecs import hookimpl
from checkout_server.plugin.manager import make_plugin_manager

# A child process with one in-test plugin whose fake is a bare fake app (fault routes only).
CHILD = textwrap.dedent("""
    from checkout_server import cli
    from checkout_server.plugin import manager as pluginmanager
    from checkout_server.plugin.fake_gateway import new_app
    from checkout_server.plugin.hookspecs import hookimpl

    class EchoPlugin:
        @hookimpl
        def register_fake_gateways(register):
            register("echo", new_app)

    pm = pluginmanager.make_plugin_manager(load_entry_points=False)
    pm.register(EchoPlugin)
    pluginmanager.pm = pm
    raise SystemExit(cli.main())
""")


class EchoPlugin:
    @hookimpl
    def register_fake_gateways(register):
        register("echo", new_app)


def start(*args: str, code: str = CHILD, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, "fake-gateway", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def listening_url(proc: subprocess.Popen) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    assert ready, "the fake gateway did not start within 20 s"
    line = proc.stdout.readline()
    assert "listening on http://127.0.0.1:" in line, line + proc.stderr.read()
    return line.rsplit(" ", 1)[1].strip()


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    finally:
        if proc.poll() is None:  # it ignored SIGTERM: the test fails, the process goes anyway
            proc.kill()
            proc.wait()


def fetch(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def test_hook_register_fake_gateways():
    pm = make_plugin_manager(load_entry_points=False)
    pm.register(EchoPlugin)
    assert collect_fake_gateways(pm) == {"echo": new_app}


def test_serves_the_named_fake_with_its_fault_switches_until_sigterm():
    proc = start("echo", "--port", "0")
    try:
        url = listening_url(proc)
        assert fetch(f"{url}/__fake__/faults")["status"] is None
        switched = fetch(f"{url}/__fake__/faults", {"status": 503, "only": ["create"]})
        assert switched["status"] == 503 and switched["only"] == ["create"]
    finally:
        assert stop(proc) == 0


def test_an_unknown_name_exits_2_naming_the_known_fakes():
    proc = start("nope")
    try:
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2
    assert "no fake gateway named 'nope' (known: echo)" in err


def test_installed_gateway_plugins_register_their_fakes():
    pytest.importorskip("checkout_stripe")
    code = "from checkout_server import cli; raise SystemExit(cli.main())"
    proc = start("stripe", code=code, env={"CHECKOUT_PLUGINS": "stripe"})
    try:
        url = listening_url(proc)
        created = urllib.request.Request(
            f"{url}/v1/checkout/sessions", data=b"mode=payment", method="POST",
            headers={"Authorization": "Bearer sk_test_cli"})
        with pytest.raises(urllib.error.HTTPError) as refused:  # no line items: Stripe's 400
            urllib.request.urlopen(created, timeout=10)
        assert refused.value.code == 400 and "error" in json.load(refused.value)
    finally:
        assert stop(proc) == 0
