"""A kit for testing checkout-server and its plugins.

    from checkout_server.testing import TestShop

    async def test_my_provider():
        async with TestShop(config={...}, plugins=[my_plugin]) as shop:
            customer = await shop.customer()
            ...

`TestShop` runs the real Application on an ephemeral loopback port over mongomock-motor
(or any Storage you pass), with exactly the plugins you give it.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from .config import parse_config
from .handlers.base import hash_token
from .pluginmanager import make_plugin_manager

__all__ = ["Response", "TestShop", "mongomock_storage"]


def mongomock_storage():
    from mongomock_motor import AsyncMongoMockClient

    from .storage import Storage

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

    async def __aenter__(self) -> "TestShop":
        from .app import Application

        pm = make_plugin_manager(load_entry_points=self.load_entry_points)
        for plugin in self.plugins:
            if pm.get_plugin(getattr(plugin, "__name__", None) or repr(plugin)) is None:
                pm.register(plugin)
        config = parse_config(self.raw_config, "<test config>")
        self.app = Application(self.storage, config, plugin_manager=pm, admin_token=self.ADMIN_TOKEN)
        await self.app.startup()
        sock, port = bind_unused_port()
        self.server = HTTPServer(self.app)
        self.server.add_sockets([sock])
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.stop()
        await self.server.close_all_connections()
        await self.app.shutdown()
        self.client.close()

    @property
    def methods(self):
        return self.app.method_registry.table

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
                       **profile) -> "Customer":
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
