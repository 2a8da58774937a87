"""Shop builders: the real app on a loopback port (`TestShop`), its customers, and the
values the core hands providers (`make_cart`, `make_address`, `make_order`, `make_urls`,
`load_provider`)."""

from __future__ import annotations

import importlib.metadata
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Self

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from checkout_server.config import parse_config
from checkout_server.handlers import reverse_url
from checkout_server.payments.return_tokens import payment_urls
from checkout_server.plugin.manager import (
    ENTRY_POINT_GROUP,
    check_hooks,
    make_plugin_manager,
    plugin_name,
)
from checkout_server.plugin.providers import (
    Address,
    Cart,
    CartLine,
    Method,
    OrderInfo,
    PaymentUrls,
    Provider,
)
from checkout_server.plugin.web import hash_token
from checkout_server.storage.plugin_documents import PluginDocuments


def mongomock_storage():
    from mongomock_motor import AsyncMongoMockClient

    from checkout_server.storage import Storage

    client = AsyncMongoMockClient()
    return Storage(client[f"test_{secrets.token_hex(4)}"], None)


@dataclass
class Response:
    status: int
    body: Any
    headers: Any
    raw: bytes

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.raw[:300]!r}>"


class TestShop:
    """The app on a loopback port with a given config and plugin set."""

    __test__ = False  # not a pytest test class
    ADMIN_TOKEN = "test-admin-token"

    def __init__(self, config: dict | None = None, plugins: list | None = None, storage=None,
                 load_entry_points: bool = False):
        self.raw_config = config or {}
        self.plugins = plugins or []
        self.storage = storage or mongomock_storage()
        self.load_entry_points = load_entry_points
        self.app = None
        self.server = None
        self.base_url = None
        self.client = AsyncHTTPClient(force_instance=True)

    async def __aenter__(self) -> Self:
        from checkout_server.app import Application

        self.plugin_manager = pm = make_plugin_manager(load_entry_points=self.load_entry_points)
        installed = {ep.value: ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
        for plugin in self.plugins:
            if not pm.is_registered(plugin):
                # An installed plugin's module goes by its entry point's name, as in the service
                # (its documents are the same `plugin_<name>` collection).
                name = installed.get(getattr(plugin, "__name__", None))
                pm.register(plugin, name=name if name and pm.get_plugin(name) is None else None)
        sock, port = bind_unused_port()
        self.base_url = f"http://127.0.0.1:{port}"
        # Unless the test says otherwise, the URLs handed to gateways point at this shop.
        raw_config = {**self.raw_config,
                      "site": {"base_url": self.base_url, **self.raw_config.get("site", {})}}
        try:
            check_hooks(pm)  # a misspelled hook in the plugin under test fails here, loudly
            config = parse_config(raw_config, "<test config>")
            self.app = Application(self.storage, config, plugin_manager=pm,
                                   admin_token=self.ADMIN_TOKEN)
            await self.app.startup()
        except BaseException:
            if self.app is not None:
                await self.app.shutdown()
            sock.close()
            self.client.close()
            raise
        self.server = HTTPServer(self.app)
        self.server.add_sockets([sock])
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.stop()
        await self.server.close_all_connections()
        await self.app.shutdown()
        self.client.close()

    @property
    def methods(self):
        return self.app.method_registry.table

    async def sweep(self, now: datetime | None = None):
        """One pass of hold expiry as the service runs it, at `now` (say an hour on): its report,
        with the keys of the orders it settled as `paid`, `cancelled`, and left on hold (`deferred`)."""
        from checkout_server.payments.sweeper import sweep

        return await sweep(self.storage, self.methods, now=now)

    def order_info(self, order: dict) -> OrderInfo:
        """`order` (as `storage.orders.get` reads it) the way its payment provider is shown it."""
        from checkout_server.payments.settlement import order_info

        return order_info(order)

    async def settle(self, order: dict, check):
        """Settle `order` (as read, maybe a while ago) on what its gateway said (`check`), as a
        return, a notification or hold expiry would: the outcome's `result` and `changed`."""
        from checkout_server.payments.settlement import settle

        return await settle(self.storage, self.methods, order, check)

    def documents(self, plugin) -> PluginDocuments:
        """The documents the core hands `plugin` (one of `plugins`) and its providers and routes."""
        return self.storage.plugin_documents(plugin_name(self.plugin_manager, plugin))

    async def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                      headers: dict | None = None, raw_body: bytes | None = None,
                      follow_redirects: bool = False) -> Response:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs.setdefault("Authorization", f"Token {token}")
        data = raw_body
        if data is None and body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = b""
        req = HTTPRequest(self.base_url + path, method=method, headers=hdrs, body=data,
                          follow_redirects=follow_redirects, allow_nonstandard_methods=True,
                          request_timeout=60)
        resp = await self.client.fetch(req, raise_error=False)
        raw = resp.body or b""
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return Response(resp.code, parsed, resp.headers, raw)

    async def admin(self, method: str, path: str, body: Any = None) -> Response:
        return await self.request(method, path, body, token=self.ADMIN_TOKEN)

    # -- builders (straight to storage: fast, and independent of the HTTP API under test)
    async def product(self, name: str = "Widget", price: int = 1000, stock: int = 10,
                      digital: bool = False, weight: int = 100) -> dict:
        return await self.storage.products.create(
            {"name": name, "price": price, "stock": stock, "digital": digital, "weight": weight})

    async def customer(self, complete: bool = True, address: bool = True, cart: dict | None = None,
                       **profile) -> Customer:
        token = secrets.token_urlsafe(24)
        fields = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
                  "phone": "+441234567890"} if complete else {}
        fields.update(profile)
        doc = await self.storage.customers.create(hash_token(token), fields)
        addr = None
        if address:
            addr = await self.storage.customers.add_address(doc["_id"], {
                "line1": "1 Analytical Way", "line2": "", "city": "London",
                "postal_code": "N1 1AA", "country": "GB"})
        for product_id, quantity in (cart or {}).items():
            await self.storage.customers.add_to_cart(doc["_id"], int(product_id), quantity)
        return Customer(self, doc["_id"], token, addr["id"] if addr else None)


@dataclass
class Customer:
    shop: TestShop
    id: int
    token: str
    address_id: int | None

    async def request(self, method: str, path: str, body: Any = None, **kwargs) -> Response:
        return await self.shop.request(method, path, body, token=self.token, **kwargs)

    async def checkout(self, payment_method: int, shipping_method: int, address: int | None = None,
                       **extra) -> Response:
        body = {"address": address if address is not None else self.address_id,
                "payment_method": payment_method, "shipping_method": shipping_method, **extra}
        headers = {}
        if "idempotency_key" in body:
            headers["Idempotency-Key"] = body.pop("idempotency_key")
        return await self.request("POST", "/api/shop/checkout/cart", body, headers=headers)


# -- value builders for provider unit tests

def make_cart(*lines: dict, currency: str = "EUR", customer_id: int = 1) -> Cart:
    """A `Cart` from line dicts: `make_cart(dict(price=1000, quantity=2, digital=False, weight=100))`.

    With no lines: one physical 10.00 item weighing 100 g.
    """
    if not lines:
        lines = ({},)
    built = []
    for index, line in enumerate(lines, start=1):
        price = line.get("price", 1000)
        quantity = line.get("quantity", 1)
        built.append(CartLine(
            product=line.get("product", index), name=line.get("name", f"Product {index}"),
            quantity=quantity, unit_price=price, line_total=price * quantity,
            digital=line.get("digital", False), weight=line.get("weight", 100)))
    return Cart(customer_id=customer_id, lines=tuple(built), currency=currency)


def make_address(**fields) -> Address:
    """An `Address` with sensible defaults; override any field."""
    values = {"id": 1, "line1": "1 Analytical Way", "city": "London", "postal_code": "N1 1AA",
              "country": "GB", "line2": ""}
    values.update(fields)
    return Address(**values)


def load_provider(cls, settings: Mapping[str, Any], method_id: int = 1, title: str | None = None) -> Provider:
    """An instance of `cls` for a method with `settings`, loaded through its schema as the config is."""
    loaded = cls.settings_schema().load(dict(settings))
    return cls(Method(method_id, title or f"Test {cls.name}", cls.kind), loaded)


def make_order(order_key: str = "ORD-2026-000001", total: int = 4_990, currency: str = "EUR",
               payment: Mapping[str, Any] | None = None, **fields) -> OrderInfo:
    """An `OrderInfo` with sensible defaults; override any field."""
    values = {"customer_id": 1, "email": "ada@example.com", "phone": None, "name": "Ada Lovelace",
              "description": f"Order {order_key}"}
    values.update(fields)
    return OrderInfo(order_key=order_key, total=total, currency=currency, payment=payment or {}, **values)


TEST_RETURN_TOKEN = "test-return-token"


def make_urls(method_id: int, order_key: str = "ORD-2026-000001", base_url: str = "http://shop.test",
              return_token: str = TEST_RETURN_TOKEN) -> PaymentUrls:
    """The URLs the core hands a payment method `method_id` for `order_key` (built by the
    core's own `return_tokens.payment_urls`, so the return URL carries `&rt=<return_token>`)."""
    return payment_urls(SimpleNamespace(base_url=base_url), reverse_url, method_id, order_key, return_token)
