"""No token, webhook secret, gateway credential or card number ever reaches a log line.

A real `serve` (DEBUG logs, both formats) runs a whole day in small: the admin creates a
product and a customer, the customer fills a profile, an address and a cart, pays on
delivery, pays through Stripe (a local fake gateway: redirect, return, signed webhook),
sends a forged webhook, bad tokens, a card number in a body and in a query string. Then
every line the service logged is searched for every secret the run used.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from live_service import LiveService

from checkout_server.plugin import shopper_choice
from checkout_server.storage.embedded import free_port

CARD_NUMBER = "4242424242424242"


def _fake_stripe(port: int) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("checkout-server")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "checkout_server.cli"]
    env = {k: v for k, v in os.environ.items() if k != "CHECKOUT_PLUGINS"}  # the tests' own limit
    return subprocess.Popen(cmd + ["fake-gateway", "stripe", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for(process: subprocess.Popen, url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the fake gateway exited: {process.stderr.read()}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def _post_json(url: str, body: dict) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).read()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_full_run_logs_no_secret(tmp_path, log_format):
    stripe_key = "sk_test_" + secrets.token_urlsafe(24)
    webhook_secret = "whsec_" + secrets.token_urlsafe(24)
    admin_token = "admin-" + secrets.token_urlsafe(24)
    fake_port = free_port()
    fake = _fake_stripe(fake_port)
    try:
        fake_url = f"http://127.0.0.1:{fake_port}"
        _wait_for(fake, fake_url + "/")
        config = tmp_path / "checkout.toml"

        def write_config(base_url: str) -> None:
            config.write_text(f'''
[site]
currency = "EUR"
base_url = "{base_url}"
return_url = "{base_url}/orders/{{order_key}}?payment={{result}}"

[[payment_methods]]
id = 1
provider = "cash_on_delivery"

[[payment_methods]]
id = 2
provider = "stripe"
[payment_methods.settings]
secret_key = "{stripe_key}"
webhook_secret = "{webhook_secret}"
sandbox = true
base_url = "{fake_url}"

[[shipping_methods]]
id = 1
provider = "flat_rate"
[shipping_methods.settings]
cost = 490
''')

        service = LiveService(tmp_path / "run", demo=False, config=config, admin_token=admin_token,
                              env={"LOG_LEVEL": "DEBUG", "LOG_FORMAT": log_format})
        write_config(service.base_url)
        with service:
            used = _run_a_day(service, fake_url, webhook_secret)
            service.stop()
            logged = service.logs()
    finally:
        fake.send_signal(signal.SIGTERM)
        try:
            fake.wait(30)
        finally:
            if fake.poll() is None:
                fake.kill()

    assert "checkout.session" in logged or "order" in logged  # the run did log its work
    if log_format == "json":
        for line in logged.splitlines():
            json.loads(line)  # one JSON object per line
    secrets_used = {"admin token": admin_token, "stripe secret key": stripe_key,
                    "webhook secret": webhook_secret, "card number": CARD_NUMBER, **used}
    leaked = {name: value for name, value in secrets_used.items() if value and value in logged}
    assert not leaked, f"secrets in the logs: {sorted(leaked)}\n" + "\n".join(
        line for line in logged.splitlines() if any(v in line for v in leaked.values()))[:3000]


def _run_a_day(service: LiveService, fake_url: str, webhook_secret: str) -> dict[str, str]:
    admin = service.admin_token
    status, product, _ = service.request("POST", "/api/admin/products", {"name": "Cup", "price": 1200, "stock": 10},
                                         token=admin)
    assert status == 201, product
    status, customer, _ = service.request("POST", "/api/admin/customers", {
        "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "phone": "+441234567890"},
        token=admin)
    assert status == 201, customer
    token = customer["token"]
    status, address, _ = service.request("POST", "/api/shop/addresses", {
        "line1": "1 Analytical Way", "city": "London", "postal_code": "N1 1AA", "country": "GB"}, token=token)
    assert status == 201, address

    def fill_cart():
        assert service.request("POST", "/api/shop/cart/items", {"product": product["id"], "quantity": 1},
                               token=token)[0] == 200

    fill_cart()
    status, answer, _ = service.request("POST", "/api/shop/checkout/cart", {
        "address": address["id"], "payment_method": 1, "shipping_method": 1}, token=token,
        headers={"Idempotency-Key": "key-" + secrets.token_hex(8)})
    assert status == 200 and "order_key" in answer, answer
    # Stripe: the webhook goes to the service, signed with the method's secret.
    _post_json(fake_url + "/__fake__/webhook", {"url": service.base_url + "/api/shop/checkout/notify/2",
                                                "secret": webhook_secret})
    fill_cart()
    status, answer, _ = service.request("POST", "/api/shop/checkout/cart", {
        "address": address["id"], "payment_method": 2, "shipping_method": 1}, token=token)
    assert status == 200 and "next_step" in answer, answer
    back = asyncio.run(shopper_choice(answer["next_step"], "approve"))
    # The browser comes back with the return token and the session id in the query string.
    return_token = back.split("rt=", 1)[1].split("&", 1)[0] if "rt=" in back else ""
    assert return_token and "/api/shop/checkout/return/2" in back, back
    request = urllib.request.Request(back.replace("http://localhost", "http://127.0.0.1"))
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(request, timeout=30)
    except urllib.error.HTTPError as exc:
        assert exc.code == 302, exc.code
    # Wait until the order is paid (the return or the webhook settles it).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        orders = service.request("GET", "/api/shop/orders", token=token)[1]
        if orders and orders[0]["status"] == "PROCESSING":
            break
        time.sleep(0.2)
    assert orders[0]["status"] == "PROCESSING", orders[0]
    # Things that must be refused, and must not leak what they carried either.
    forged = service.request("POST", "/api/shop/checkout/notify/2", {"type": "checkout.session.completed"},
                             headers={"Stripe-Signature": f"t=1,v1={secrets.token_hex(32)}"})
    assert forged[0] == 400
    assert service.request("GET", "/api/shop/profile", token="wrong" + token[5:])[0] == 401
    assert service.request("GET", "/api/admin/plugins", token=token)[0] == 403
    assert service.request("PATCH", "/api/shop/profile", {"card_number": CARD_NUMBER}, token=token)[0] == 400
    assert service.request("GET", f"/api/shop/orders?card={CARD_NUMBER}", token=token)[0] == 200
    assert service.request("GET", f"/api/shop/checkout/return/2?order=ORD-1&rt={return_token}x")[0] == 404
    return {"customer token": token, "return token": return_token}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

