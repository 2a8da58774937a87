"""SIGTERM on a running `serve`: no new work, in-flight requests finish, exit 0."""

import http.client
import json
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from live import Service, free_port, make_customer, make_product, request, site_config

pytest.importorskip("checkout_stripe", reason="pip install -r requirements.txt")
pytest.importorskip("checkout_shipping_basic", reason="pip install -r requirements.txt")


class HeldGateway:
    """A Stripe stand-in whose session creation waits until the test releases it."""

    def __init__(self):
        self.arrived = threading.Event()
        self.release = threading.Event()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/v1/checkout/sessions":
                    gateway.arrived.set()
                    gateway.release.wait(60)
                body = json.dumps({"id": "cs_test_1", "url": "https://pay.test/cs_test_1"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _stripe_config(port: int, gateway_url: str) -> str:
    return site_config(port, methods=f"""
[[payment_methods]]
id = 1
provider = "stripe"
[payment_methods.settings]
secret_key = "sk_test_shutdown"
sandbox = true
base_url = "{gateway_url}"
timeout = 15

[[shipping_methods]]
id = 1
provider = "flat_rate"
[shipping_methods.settings]
cost = 490
""")


def test_sigterm_refuses_new_work_and_lets_the_request_in_flight_finish(tmp_path):
    gateway = HeldGateway()
    port = free_port()
    service = Service(tmp_path, port=port, config=_stripe_config(port, gateway.url))
    try:
        service.start()
        product = make_product(port, "Mug", stock=5)
        token, address = make_customer(port, "Ada")
        assert request(port, "POST", "/api/shop/cart/items", token=token,
                       body={"product": product, "quantity": 1})[0] == 200
        # A client with an open keep-alive connection, idle when SIGTERM comes.
        idle = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        assert request(port, "GET", "/health", connection=idle)[0] == 200

        answers = []
        in_flight = threading.Thread(target=lambda: answers.append(request(
            port, "POST", "/api/shop/checkout/cart", token=token, timeout=60,
            body={"address": address, "payment_method": 1, "shipping_method": 1})))
        in_flight.start()
        assert gateway.arrived.wait(30), "the checkout never reached the gateway"

        service.signal(signal.SIGTERM)
        # Until the service has seen the signal, the idle connection is still served normally.
        deadline = time.monotonic() + 20
        while True:
            status, headers, body = request(port, "GET", "/health", connection=idle)
            if status != 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status == 503, body
        assert body == {"error": "the service is shutting down: retry the request"}
        assert headers["Connection"] == "close" and headers["Content-Type"].startswith("application/json")
        with pytest.raises((http.client.HTTPException, OSError)):  # the service closed it
            request(port, "GET", "/health", connection=idle)
        # Nor does anyone get a new connection, while the checkout still waits on its gateway.
        deadline = time.monotonic() + 10
        while _connects(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _connects(port)
        assert service.process.poll() is None and not answers

        gateway.release.set()
        in_flight.join(60)
        [(status, _, body)] = answers
        assert status == 200 and body == {"next_step": "https://pay.test/cs_test_1"}
        assert service.process.wait(60) == 0
        log = service.log()
        assert "Traceback" not in log and "after close" not in log, log
    finally:
        service.kill()
        gateway.close()


def _connects(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
