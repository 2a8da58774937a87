"""The embedded database dies under load: the service restarts it, or gives up and exits 1."""

import os
import signal
import socket
import sys
import threading
import time

import pytest
from live import Service, make_customer, make_product, request

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals and /proc"),
    pytest.mark.usefixtures("demo_providers"),
]


@pytest.fixture
def demo_providers():
    pytest.importorskip("checkout_shipping_basic", reason="pip install -r requirements.txt")
    pytest.importorskip("checkout_cod", reason="pip install -r requirements.txt")


class Load:
    """Shoppers reading and changing their carts until stopped; every answer is kept."""

    def __init__(self, port: int, shoppers: list[tuple[str, int]], product: int):
        self.port, self.shoppers, self.product = port, shoppers, product
        self.answers: list[tuple[int, object]] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._shop, args=(token,)) for token, _ in shoppers]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)

    def _shop(self, token: str):
        quantity = 0
        while not self.stopping.is_set():
            quantity = quantity % 5 + 1
            for method, path, body in (("PUT", f"/api/shop/cart/items/{self.product}", {"quantity": quantity}),
                                       ("GET", "/api/shop/cart", None)):
                try:
                    status, _, answer = request(self.port, method, path, token=token, body=body, timeout=30)
                except OSError:
                    continue  # the service itself is never down here; a reset is kept as such
                self.answers.append((status, answer))

    def statuses(self) -> set[int]:
        return {status for status, _ in self.answers}


def test_a_killed_embedded_database_is_restarted_on_the_same_data(tmp_path):
    service = Service(tmp_path).start()
    try:
        product = make_product(service.port, "Mug", stock=50)
        shoppers = [make_customer(service.port, name) for name in ("Ada", "Bob", "Cy")]
        first_pid = service.database_pid()
        with Load(service.port, shoppers, product) as load:
            while len(load.answers) < 30:
                time.sleep(0.05)
            os.kill(first_pid, signal.SIGKILL)
            killed_at = time.monotonic()
            noticed = f"embedded database (pid {first_pid}) exited with status -9: restarting it"
            while noticed not in service.log() and time.monotonic() - killed_at < 10:
                time.sleep(0.05)
            assert noticed in service.log()
            assert time.monotonic() - killed_at < 3  # within a few seconds
            while "embedded database restarted" not in service.log() and time.monotonic() - killed_at < 30:
                time.sleep(0.05)
            served_before = len(load.answers)
            while len(load.answers) < served_before + 30 and time.monotonic() - killed_at < 60:
                time.sleep(0.05)
        assert service.process.poll() is None
        assert service.database_pid() != first_pid
        # The same data: the product and the carts are still there.
        status, _, stored = request(service.port, "GET", f"/api/admin/products/{product}", token="live-admin")
        assert status == 200 and stored["received"] == 50
        assert request(service.port, "GET", "/api/shop/cart", token=shoppers[0][0])[0] == 200
        # Meanwhile every answer was a normal one or a JSON 503, never a 500.
        assert load.statuses() <= {200, 503}, load.statuses()
        assert all(isinstance(answer, dict) and "error" in answer for status, answer in load.answers if status == 503)
        log = service.log()
        assert log.count("exited with status -9") == 1
        assert "Traceback" not in log
        assert service.stop() == 0
    finally:
        service.kill()


def test_a_database_that_cannot_be_restarted_stops_the_service_with_status_1(tmp_path):
    service = Service(tmp_path).start()
    try:
        product = make_product(service.port, "Mug", stock=50)
        shoppers = [make_customer(service.port, "Ada")]
        database = service.database_pid()
        port = int(service.log().split("embedded database on 127.0.0.1:")[1].split(",")[0])
        # Deterministically: with the parent paused, kill the database and take its port,
        # so that every restart on the same port fails.
        service.signal(signal.SIGSTOP)
        try:
            os.kill(database, signal.SIGKILL)
            squatter = socket.socket()
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            deadline = time.monotonic() + 10
            while True:
                try:
                    squatter.bind(("127.0.0.1", port))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            squatter.listen()
        finally:
            service.signal(signal.SIGCONT)
        try:
            with Load(service.port, shoppers, product) as load:
                code = service.process.wait(90)
        finally:
            squatter.close()
        assert code == 1
        log = service.log()
        assert "(attempt 5 of 5)" in log and "5 restarts failed in a row: giving up" in log
        # Requests got JSON 503s while the database was gone, and no traceback was logged.
        assert 503 in load.statuses() and load.statuses() <= {200, 503}, load.statuses()
        assert "Traceback" not in log
    finally:
        service.kill()
