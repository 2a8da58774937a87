"""`checkout-server serve --demo` as a user runs it: a real process, the embedded database."""

import http.client
import json
import re
import time
import urllib.parse
import urllib.request

import pytest
from demo_process import missing_demo_providers as _missing_demo_providers
from demo_process import read_demo as _read_demo
from demo_process import start_demo as _start
from demo_process import stop_process as _stop

from checkout_server.storage.embedded import free_port


def _get(port: int, path: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_demo_twice_on_the_same_data(tmp_path):
    missing = _missing_demo_providers()
    if missing:
        pytest.skip(f"the demo's providers are not installed ({', '.join(sorted(missing))}): "
                    "pip install -r requirements.txt")
    data_dir = tmp_path / "var"
    port = free_port()
    process = _start(data_dir, port)
    try:
        token, printed = _read_demo(process)
        assert f"http://127.0.0.1:{port}/api/shop/cart" in printed
        assert _get(port, "/health") == (200, {"status": "ok"})
        status, cart = _get(port, "/api/shop/cart", token)
        assert status == 200 and cart["currency"] == "EUR" and len(cart["items"]) == 2
        status, profile = _get(port, "/api/shop/profile", token)
        assert profile["complete"] is True
        status, addresses = _get(port, "/api/shop/addresses", token)
        assert len(addresses) == 1 and f'"address": {addresses[0]["id"]}' in printed
        first_products = [_get(port, f"/api/admin/products/{n}", "serve-test-admin") for n in range(1, 7)]
    finally:
        code = _stop(process)
    assert code == 0

    process = _start(data_dir, port)
    try:
        new_token, _ = _read_demo(process)
        assert new_token != token
        # Only hashes are stored: the old token no longer works, the new one does.
        assert _get(port, "/api/shop/cart", token)[0] == 401
        status, cart_again = _get(port, "/api/shop/cart", new_token)
        assert cart_again == cart  # quantities set, not added
        assert _get(port, "/api/shop/addresses", new_token)[1] == addresses
        assert _get(port, "/api/shop/profile", new_token)[1]["id"] == profile["id"]
        products = [_get(port, f"/api/admin/products/{n}", "serve-test-admin") for n in range(1, 7)]
        assert products == first_products
        assert [status for status, _ in products] == [200] * 5 + [404]  # 5 products, no more
    finally:
        code = _stop(process)
    assert code == 0


def _printed_checkout(printed: str, comment: str) -> tuple[str, dict]:
    """The URL and JSON body of the checkout curl printed under a comment containing `comment`."""
    lines = printed.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("#") and comment in line)
    curl = lines[index + 1]
    url = re.search(r'curl -X POST "([^"]+)"', curl).group(1)
    body = json.loads(re.search(r"-d '(\{.*\})'$", curl).group(1))
    return url, body


def _request(url: str, method: str = "GET", token: str | None = None,
             body: bytes | None = None, content_type: str = "application/json"):
    """(status, Location header, body) without following redirects."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    headers = {"Content-Type": content_type} if body is not None else {}
    if token:
        headers["Authorization"] = f"Token {token}"
    try:
        connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body, headers)
        response = connection.getresponse()
        return response.status, response.getheader("Location"), response.read().decode()
    finally:
        connection.close()


def test_demo_redirect_flow_follows_the_port(tmp_path):
    """The demo config says :8888; on any other port the sandbox flow works end to end,
    every URL it hands out is on the port the server listens on, and the direct flow too."""
    missing = _missing_demo_providers()
    if missing:
        pytest.skip(f"the demo's providers are not installed ({', '.join(sorted(missing))})")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = _start(tmp_path / "var", port)
    try:
        token, printed = _read_demo(process)
        url, body = _printed_checkout(printed, "redirect payment")
        assert url == f"{base}/api/shop/checkout/cart" and body["payment_method"] == 2

        status, _, answer = _request(url, "POST", token, json.dumps(body).encode())
        assert status == 200, answer
        next_step = json.loads(answer)["next_step"]
        assert next_step.startswith(f"{base}/sandbox/pay/")
        status, _, page = _request(next_step)
        assert status == 200 and "Pay" in page and "53.80 EUR" in page  # 2 x 12.00 + 24.90 + 4.90 shipping

        [form_token] = re.findall(r'name="form_token" value="([\w-]+)"', page)  # the page's CSRF token
        status, location, _ = _request(next_step, "POST", body=f"decision=pay&form_token={form_token}".encode(),
                                       content_type="application/x-www-form-urlencoded")
        assert status == 303 and location.startswith(f"{base}/api/shop/checkout/return/2?order=ORD-")
        order_key = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["order"][0]
        status, landing, _ = _request(location)
        # The demo's return_url is its storefront's order page.
        assert (status, landing) == (302, f"{base}/orders/{order_key}?payment=paid")
        status, _, page = _request(landing)
        assert status == 200 and '<script src="/storefront/storefront.js"' in page

        status, order = _get(port, f"/api/shop/orders/{order_key}", token)
        assert status == 200 and order["status"] == "PROCESSING"
        assert _get(port, "/api/shop/cart", token)[1]["items"] == []
    finally:
        assert _stop(process) == 0

    # The direct flow, on a second run (which refills the cart).
    process = _start(tmp_path / "var", port)
    try:
        token, printed = _read_demo(process)
        url, body = _printed_checkout(printed, "paying on delivery")
        status, _, answer = _request(url, "POST", token, json.dumps(body).encode())
        assert status == 200, answer
        order_key = json.loads(answer)["order_key"]
        assert _get(port, f"/api/shop/orders/{order_key}", token)[1]["status"] == "PROCESSING"
    finally:
        assert _stop(process) == 0


@pytest.mark.parametrize(("site", "host", "port", "expected"), [
    # the demo's loopback URLs move to the listening port; a wildcard host shows loopback
    ({"base_url": "http://127.0.0.1:8888", "return_url": "http://127.0.0.1:8888/r/{order_key}"},
     "0.0.0.0", 9000, ("http://127.0.0.1:9000", "http://127.0.0.1:9000/r/{order_key}")),
    # a storefront elsewhere keeps its return_url
    ({"base_url": "http://localhost:8888", "return_url": "https://shop.example/o/{order_key}"},
     "127.0.0.1", 9000, ("http://127.0.0.1:9000", "https://shop.example/o/{order_key}")),
    # public URLs are never touched
    ({"base_url": "https://api.shop.example", "return_url": "https://shop.example/o/{order_key}"},
     "0.0.0.0", 9000, ("https://api.shop.example", "https://shop.example/o/{order_key}")),
])
def test_demo_site_urls_follow_the_listening_address(site, host, port, expected):
    from checkout_server.config import parse_config
    from checkout_server.demo import follow_listen_address

    moved = follow_listen_address(parse_config({"site": site}, None), host, port).site
    assert (moved.base_url, moved.return_url) == expected


def test_a_second_service_on_the_same_data_is_refused(tmp_path):
    """Two services on one CHECKOUT_DATA_DIR: the second stops, the first keeps its database."""
    if _missing_demo_providers():
        pytest.skip("the demo's providers are not installed: pip install -r requirements.txt")
    data_dir = tmp_path / "var"
    port = free_port()
    first = _start(data_dir, port)
    second = None
    try:
        _read_demo(first)
        second = _start(data_dir, free_port())
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 2
        assert "in use by another checkout-server" in out and f"pid {first.pid}" in out
        assert _get(port, "/health") == (200, {"status": "ok"})
    finally:
        if second is not None and second.poll() is None:
            second.kill()
            second.wait()
        code = _stop(first)
    assert code == 0


def test_simultaneous_starts_on_one_data_dir_leave_exactly_one_running(tmp_path):
    """Several services started at once on one data directory: one wins, every other exits 2
    with the documented message, and the winner keeps its database and files."""
    if _missing_demo_providers():
        pytest.skip("the demo's providers are not installed: pip install -r requirements.txt")
    data_dir = tmp_path / "var"
    ports = [free_port() for _ in range(3)]
    processes = [_start(data_dir, port) for port in ports]
    try:
        deadline = time.monotonic() + 60
        while sum(p.poll() is None for p in processes) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        running = [p for p in processes if p.poll() is None]
        assert len(running) == 1
        [winner] = running
        port = ports[processes.index(winner)]
        _read_demo(winner)
        for loser in processes:
            if loser is not winner:
                out = loser.stdout.read()
                assert loser.returncode == 2, out
                assert f"is in use by another checkout-server (pid {winner.pid})" in out
                assert "Traceback" not in out
        assert (data_dir / "checkout-server.lock").read_text().split() == [str(winner.pid)]
        assert _get(port, "/health") == (200, {"status": "ok"})
    finally:
        for process in processes:
            if process.poll() is None:
                _stop(process)
        for process in processes:
            process.stdout.close()
    assert winner.returncode == 0
