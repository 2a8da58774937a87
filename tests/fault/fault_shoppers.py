"""Shoppers for the fault tests: checkout traffic of every kind against live services, and
what each answer promises (checked against the database afterwards).

Each shopper is a thread that checks out again and again, one checkout at a time, each
time one of: a direct payment (pay on delivery), a redirect payment paid or cancelled on
the sandbox page, a redirect payment abandoned, or a direct payment with an
`Idempotency-Key`. Any request may fail (the service may be killed at any moment): a
shopper then simply goes on with the next checkout. Only what the service acknowledged is
remembered: the order keys it answered and their promised state, and the first answer of
every key.
"""

from __future__ import annotations

import http.client
import random
import re
import threading
import time
import traceback
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass, field

from live import request

SCENARIOS = ("direct", "paid", "cancelled", "abandoned", "keyed")


class Unanswered(Exception):
    """The service did not answer (killed, restarting, connection reset)."""


@dataclass
class Ledger:
    """What the services acknowledged, shared by the shoppers."""

    # order key -> the statuses it may have at the end
    orders: dict[str, set[str]] = field(default_factory=dict)
    # (token, key, body, status, answer) of each keyed checkout's first answer
    keyed: list[tuple[str, str, dict, int, object]] = field(default_factory=list)
    checkouts: dict[str, int] = field(default_factory=dict)  # scenario -> acknowledged count
    errors: list[str] = field(default_factory=list)  # a shopper's failed assertion, with its traceback
    refusals: Counter = field(default_factory=Counter)  # 4xx checkout answers, by error
    lock: threading.Lock = field(default_factory=threading.Lock)

    def promise(self, order_key: str, statuses: set[str], scenario: str | None = None) -> None:
        with self.lock:
            self.orders[order_key] = statuses
            if scenario:
                self.checkouts[scenario] = self.checkouts.get(scenario, 0) + 1


class Shopper(threading.Thread):
    def __init__(self, ports: list[int], token: str, address: int, products: list[int], ledger: Ledger,
                 stopping: threading.Event, seed: int, scenarios: tuple[str, ...] = SCENARIOS):
        super().__init__(daemon=True)
        self.scenarios = scenarios
        self.ports, self.token, self.address, self.products = ports, token, address, products
        self.ledger, self.stopping = ledger, stopping
        self.random = random.Random(seed)

    @property
    def port(self) -> int:
        return self.random.choice(self.ports)  # several instances: any one may answer

    def call(self, method: str, path: str, *, port: int | None = None, **kwargs):
        try:
            return request(port or self.port, method, path, token=kwargs.pop("token", self.token),
                           timeout=30, **kwargs)
        except (OSError, http.client.HTTPException) as exc:
            raise Unanswered(str(exc)) from None

    def run(self):
        while not self.stopping.is_set():
            scenario = self.random.choice(self.scenarios)
            try:
                self.fill_cart()
                getattr(self, scenario)()
            except Unanswered:
                time.sleep(0.1)  # the service is down: try again shortly
            except Exception:  # noqa: BLE001 -- reported by the test, not lost in a thread
                self.ledger.errors.append(f"{scenario}: {traceback.format_exc()}")
                return

    def fill_cart(self):
        """1 to 3 random lines; whatever else the cart holds (say a sold-out product) goes."""
        chosen = self.random.sample(self.products, self.random.randint(1, min(3, len(self.products))))
        status, _, cart = self.call("GET", "/api/shop/cart")
        assert status == 200, cart
        for line in cart["items"]:
            if line["product"] not in chosen:
                self.call("DELETE", f"/api/shop/cart/items/{line['product']}")
        for product in chosen:
            self.call("PUT", f"/api/shop/cart/items/{product}", body={"quantity": self.random.randint(1, 3)})

    def checkout(self, payment_method: int, headers: dict | None = None):
        answer = self.call("POST", "/api/shop/checkout/cart", headers=headers, body={
            "address": self.address, "payment_method": payment_method, "shipping_method": 1})
        if answer[0] >= 400:
            with self.ledger.lock:
                self.ledger.refusals[f"{answer[0]} {answer[2].get('error') if isinstance(answer[2], dict) else answer[2]}"] += 1
        return answer

    def direct(self):
        status, _, body = self.checkout(1)
        # A next_step instead: the same cart's order still waits for its payment (a repeat).
        if status == 200 and "order_key" in body:
            self.ledger.promise(body["order_key"], {"PROCESSING"}, "direct")

    def keyed(self):
        key, body = str(uuid.uuid4()), {"address": self.address, "payment_method": 1, "shipping_method": 1}
        status, _, answer = self.call("POST", "/api/shop/checkout/cart", headers={"Idempotency-Key": key}, body=body)
        if status in (200, 400):
            with self.ledger.lock:
                self.ledger.keyed.append((self.token, key, body, status, answer))
        if status == 200 and "order_key" in answer:
            self.ledger.promise(answer["order_key"], {"PROCESSING"}, "keyed")
        if status == 200:
            # A retry at once (as after a lost answer) answers the same.
            assert self.call("POST", "/api/shop/checkout/cart", headers={"Idempotency-Key": key},
                             body=body)[::2] == (status, answer)

    def redirect(self, scenario: str, method: int = 2, page: str = "/sandbox/pay/") -> tuple[str, str] | None:
        """A redirect checkout: (order key, the pay page) once acknowledged."""
        status, _, body = self.checkout(method)
        if status != 200:
            return None
        # The newest order is this one (a shopper runs one checkout at a time), or, for an
        # unchanged cart whose order still waits, that one, answered again.
        status, _, orders = self.call("GET", "/api/shop/orders?limit=1")
        assert status == 200 and orders, (status, orders)
        order_key = orders[0]["order_key"]
        if page not in body.get("next_step", ""):  # a repeat of another method's order
            self.ledger.promise(order_key, self.ledger.orders.get(order_key, {"HOLD", "PROCESSING", "CANCELLED"}))
            return None
        self.ledger.promise(order_key, {"HOLD", "PROCESSING", "CANCELLED"}, scenario)
        return order_key, body["next_step"]

    def abandoned(self):
        answered = self.redirect("abandoned")
        if answered:
            # Never paid, and the hold lasts 30 minutes: it is still waiting at the end.
            self.ledger.promise(answered[0], {"HOLD"})

    def paid(self):
        self.decide("pay", "paid", "PROCESSING")

    def cancelled(self):
        self.decide("cancel", "failed", "CANCELLED")

    def decide(self, decision: str, result: str, status_after: str):
        answered = self.redirect({"pay": "paid", "cancel": "cancelled"}[decision])
        if not answered:
            return
        order_key, next_step = answered
        page = urllib.parse.urlsplit(next_step)
        status, _, html = self.call("GET", page.path, port=page.port, token=None)
        assert status == 200, html
        [form_token] = re.findall(r'name="form_token" value="([\w-]+)"', html)
        status, headers, _ = self.call("POST", page.path, port=page.port, token=None, form=True,
                                       body={"decision": decision, "form_token": form_token})
        assert status == 303, status
        back = urllib.parse.urlsplit(headers["Location"])
        status, headers, _ = self.call("GET", f"{back.path}?{back.query}", port=back.port, token=None)
        assert status == 302, status
        assert headers["Location"].endswith(f"{order_key}?payment={result}"), headers["Location"]
        self.ledger.promise(order_key, {status_after})

    def stripe(self):
        """Stripe (its local fake, method 3): paid on its page; the return and the fake's
        webhook then race each other, usually at different instances."""
        answered = self.redirect("stripe", method=3, page="/c/pay/")
        if not answered:
            return
        order_key, next_step = answered
        self.ledger.promise(order_key, {"HOLD", "PROCESSING"})
        page = urllib.parse.urlsplit(next_step)
        status, headers, _ = self.call("POST", page.path, port=page.port, token=None, form=True,
                                       body={"choice": "approve"})
        assert status == 303, status
        back = urllib.parse.urlsplit(headers["Location"])
        status, headers, _ = self.call("GET", f"{back.path}?{back.query}", port=back.port, token=None)
        assert status == 302 and headers["Location"].endswith(f"{order_key}?payment=paid"), headers["Location"]
        self.ledger.promise(order_key, {"PROCESSING"})
