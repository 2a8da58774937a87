"""A kit for testing checkout-server and its plugins.

    from checkout_server.testing import TestShop

    async def test_my_provider():
        async with TestShop(config={...}, plugins=[my_plugin]) as shop:
            customer = await shop.customer()
            ...

`TestShop` runs the real Application on an ephemeral loopback port over mongomock-motor
(or any Storage you pass), with exactly the plugins you give it. `check_payment_provider`
and `check_shipping_provider` assert the provider contract; `make_cart` and `make_address`
build the values providers are shown.
"""

from __future__ import annotations

import inspect
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from marshmallow import Schema
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from .config import parse_config
from .handlers.base import hash_token
from .pluginmanager import check_hooks, make_plugin_manager
from .providers import (
    Address,
    Cart,
    CartLine,
    Method,
    PaymentProvider,
    Provider,
    ShippingProvider,
    Support,
)

__all__ = [
    "Response", "TestShop", "check_payment_provider", "check_shipping_provider", "make_address",
    "make_cart", "mongomock_storage",
]


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

    async def __aenter__(self) -> Self:
        from .app import Application

        pm = make_plugin_manager(load_entry_points=self.load_entry_points)
        for plugin in self.plugins:
            if not pm.is_registered(plugin):
                pm.register(plugin)
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


# -- conformance checks of the provider contract

def _sample_carts() -> list[Cart]:
    return [
        make_cart(),
        make_cart({"price": 250, "quantity": 3, "weight": 2000}),
        make_cart({"price": 1500, "digital": True, "weight": 0}),
        make_cart({"price": 999}, {"price": 5000, "digital": True, "weight": 0}),
        make_cart({"price": 10_000_000, "quantity": 5, "weight": 50_000}),
    ]


def _instantiate(cls, base: type, kind: str, settings: Mapping[str, Any]) -> Provider:
    assert isinstance(cls, type) and issubclass(cls, base), f"{cls!r} must subclass {base.__name__}"
    name = getattr(cls, "name", None)
    assert isinstance(name, str) and name.isidentifier() and name == name.lower(), (
        f"{cls.__name__}.name must be a lowercase identifier, got {name!r}")
    assert cls.kind == kind, f"{cls.__name__}.kind must be {kind!r}"
    schema = getattr(cls, "settings_schema", None)
    assert isinstance(schema, type) and issubclass(schema, Schema), (
        f"{cls.__name__}.settings_schema must be a marshmallow Schema class")
    loaded = schema().load(dict(settings))  # raises ValidationError with the field name
    provider = cls(Method(1, f"Test {name}", kind), loaded)
    for hook in ("startup", "close"):
        assert inspect.iscoroutinefunction(getattr(provider, hook)), f"{cls.__name__}.{hook} must be async"
    return provider


def _assert_support(answer, who: str) -> None:
    assert isinstance(answer, Support), f"{who} must return a Support, got {answer!r}"
    if not answer.ok:
        assert isinstance(answer.reason, str) and answer.reason.strip(), (
            f"{who} said no without a human-readable reason")


def check_payment_provider(cls, settings: Mapping[str, Any] | None = None,
                           carts: list[Cart] | None = None) -> PaymentProvider:
    """Assert that `cls` keeps the payment provider contract; returns an instance.

    Checks name, kind, flow, that `settings_schema` loads `settings`, that `supports()`
    answers a `Support` (with a reason when it says no) for a range of carts, and that
    the gateway methods are coroutines.
    """
    provider = _instantiate(cls, PaymentProvider, "payment", settings or {})
    assert cls.flow in ("redirect", "direct"), f"{cls.__name__}.flow must be 'redirect' or 'direct'"
    for hook in ("start", "verify_return", "check", "parse_notification"):
        assert inspect.iscoroutinefunction(getattr(provider, hook)), f"{cls.__name__}.{hook} must be async"
    assert type(provider).start is not PaymentProvider.start, f"{cls.__name__} must implement start()"
    for cart in carts or _sample_carts():
        _assert_support(provider.supports(cart), f"{cls.__name__}.supports()")
    return provider


def check_shipping_provider(cls, settings: Mapping[str, Any] | None = None,
                            carts: list[Cart] | None = None,
                            addresses: list[Address] | None = None) -> ShippingProvider:
    """Assert that `cls` keeps the shipping provider contract; returns an instance.

    Checks name, kind, that `settings_schema` loads `settings`, that `supports()` answers a
    `Support` and that `quote()` is a non-negative integer (minor units) whenever
    `supports()` said yes, for a range of carts and addresses.
    """
    provider = _instantiate(cls, ShippingProvider, "shipping", settings or {})
    assert not inspect.iscoroutinefunction(provider.quote), f"{cls.__name__}.quote must not be async"
    for cart in carts or _sample_carts():
        for address in addresses or [make_address(), make_address(id=2, country="DE", city="Berlin")]:
            support = provider.supports(cart, address)
            _assert_support(support, f"{cls.__name__}.supports()")
            if support:
                cost = provider.quote(cart, address)
                assert isinstance(cost, int) and not isinstance(cost, bool) and cost >= 0, (
                    f"{cls.__name__}.quote() must return a non-negative int (minor units), got {cost!r}")
    return provider
