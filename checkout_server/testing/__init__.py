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

For a payment gateway plugin: `gateway_shop(...)` runs the plugin's fake gateway and a
`TestShop` with one method on it and a shopper with a cart (a `GatewayShop`);
`follow_next_step` plays the shopper's browser through the fake's page and back to the shop;
`assert_consistent` checks the stock ledger, the order's status and the cart after each step.
Provider unit tests get `load_provider`, `provider_on_fake`, `make_order`, `make_urls`,
`start_payment` and `query_params`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import inspect
import json
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from marshmallow import Schema, fields, validate
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from checkout_server.config import parse_config
from checkout_server.handlers import reverse_url
from checkout_server.payments.return_tokens import (
    NOTIFY_ROUTE,
    RETURN_ROUTE,
    payment_urls,
)
from checkout_server.plugin.fake_gateway import RunningFake, run_fake, shopper_choice
from checkout_server.plugin.hookspecs import hookimpl
from checkout_server.plugin.manager import check_hooks, make_plugin_manager, plugin_name
from checkout_server.plugin.providers import (
    MAX_MONEY,
    Address,
    Cart,
    CartLine,
    Method,
    NoSettings,
    OrderInfo,
    PaymentProvider,
    PaymentStart,
    PaymentUrls,
    Provider,
    ShippingProvider,
    Support,
)
from checkout_server.plugin.web import hash_token
from checkout_server.storage.plugin_documents import PluginDocuments

__all__ = [
    "COURIER_ID",
    "RETURN_URL",
    "SHOP_URL",
    "CourierPlugin",
    "FixedRateCourier",
    "GatewayShop",
    "Response",
    "TestShop",
    "assert_consistent",
    "check_payment_provider",
    "check_shipping_provider",
    "follow_next_step",
    "gateway_shop",
    "load_provider",
    "make_address",
    "make_cart",
    "make_order",
    "make_urls",
    "mongomock_storage",
    "provider_on_fake",
    "query_params",
    "return_to_shop",
    "start_payment",
    "unused_url",
]


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

    async def sweep(self, now: datetime | None = None):
        """One pass of hold expiry as the service runs it, at `now` (say an hour on): its report,
        with the keys of the orders it settled as `paid`, `cancelled`, and left on hold (`deferred`)."""
        from checkout_server.payments.sweeper import sweep

        return await sweep(self.storage, self.methods, now=now)

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


# -- conformance checks of the provider contract
#
# These check a provider *class*. A misspelled hook (`register_payment_provider`) is not
# theirs to find: TestShop and plugin loading refuse it (pluginmanager.check_hooks).

def _sample_carts() -> list[Cart]:
    return [
        make_cart(),
        make_cart({"price": 250, "quantity": 3, "weight": 2000}),
        make_cart({"price": 1500, "digital": True, "weight": 0}),
        make_cart({"price": 999}, {"price": 5000, "digital": True, "weight": 0}),
        make_cart({"price": 10_000_000, "quantity": 5, "weight": 50_000}),
    ]


def _describe_cart(cart: Cart) -> str:
    """A sample cart as a failing check names it: what each line is, and the totals."""
    lines = ", ".join(
        f"{line.quantity} x {line.unit_price} ({'digital' if line.digital else f'{line.weight} g each'})"
        for line in cart.lines)
    return (f"<{lines}; subtotal {cart.subtotal}, shipping {cart.shipping_cost}, "
            f"total {cart.total} {cart.currency}, {cart.weight} g>")


def _call(who: str, sample: str, function: Callable, *args) -> Any:
    """`function(*args)`, with an exception turned into a failure naming `who` and the sample."""
    try:
        return function(*args)
    except Exception as exc:
        raise AssertionError(f"{who} raised {type(exc).__name__}({exc}) on {sample}") from exc


def _run_coroutine(make: Callable[[], Any]) -> Any:
    """Run `make()`'s coroutine to its end from synchronous code, in or out of a running loop.

    A thread of its own with its own event loop: the caller may be a sync test or a
    `gen_test` coroutine, and the caller's loop is left as it was.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, make()).result()


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


def _assert_support(answer, who: str, sample: str) -> None:
    assert isinstance(answer, Support), f"{who} must return a Support, got {answer!r} on {sample}"
    if not answer.ok:
        assert isinstance(answer.reason, str) and answer.reason.strip(), (
            f"{who} said no without a human-readable reason on {sample}")


def _overrides(cls, hook: str) -> bool:
    return getattr(cls, hook) is not getattr(PaymentProvider, hook)


def check_payment_provider(cls, settings: Mapping[str, Any] | None = None,
                           carts: list[Cart] | None = None, *,
                           run_start: bool = True) -> PaymentProvider:
    """Assert that `cls` keeps the payment provider contract; returns an instance.

    Checks name, kind, flow, that `settings_schema` loads `settings`, that `supports()`
    answers a `Support` (with a reason when it says no) for a range of carts, that the
    gateway methods are coroutines, and that the core can learn how a payment ended:

    - redirect flow: `check()` or `verify_return()` is overridden (the defaults cannot know);
    - direct flow: `start()` is run on a sample order (on an instance of its own, between
      `startup()` and `close()`) and must return a `PaymentStart`; one that is not
      `settled=True` leaves orders on HOLD, so `check()` or `parse_notification()` must be
      overridden to settle them later. `run_start=False` skips running it, for a direct
      `start()` that calls a gateway: test that one against its fake.
    """
    provider = _instantiate(cls, PaymentProvider, "payment", settings or {})
    flow = getattr(cls, "flow", None)
    assert flow in ("redirect", "direct"), f"{cls.__name__}.flow must be 'redirect' or 'direct', got {flow!r}"
    for hook in ("start", "verify_return", "check", "parse_notification", "cancel_payment", "refund",
                 "check_refund"):
        assert inspect.iscoroutinefunction(getattr(provider, hook)), f"{cls.__name__}.{hook} must be async"
    assert _overrides(cls, "start"), f"{cls.__name__} must implement start()"
    if flow == "redirect":
        assert _overrides(cls, "check") or _overrides(cls, "verify_return"), (
            f"{cls.__name__}: a redirect provider must override check() or verify_return() — "
            f"the core cannot know the payment was made")
    for cart in carts or _sample_carts():
        sample = f"the sample cart {_describe_cart(cart)}"
        who = f"{cls.__name__}.supports()"
        _assert_support(_call(who, sample, provider.supports, cart), who, sample)
    if flow == "direct" and run_start:
        _check_direct_start(cls, settings or {})
    return provider


def _check_direct_start(cls, settings: Mapping[str, Any]) -> None:
    provider = load_provider(cls, settings)
    order = make_order()
    sample = f"the sample order {order.order_key} ({order.total} {order.currency})"

    async def run():
        await provider.startup()
        try:
            return await provider.start(order, make_urls(provider.method.id, order.order_key))
        finally:
            await provider.close()

    start = _call(f"{cls.__name__}.start()", sample, _run_coroutine, run)
    assert isinstance(start, PaymentStart), (
        f"{cls.__name__}.start() must return a PaymentStart, got {start!r} on {sample}")
    if not start.settled:
        assert _overrides(cls, "check") or _overrides(cls, "parse_notification"), (
            f"{cls.__name__}.start() left {sample} unsettled (a PaymentStart without settled=True): "
            f"the order waits on HOLD, so override check() (asked when the hold expires) or "
            f"parse_notification() to settle it later; as it is, every such order is cancelled "
            f"at hold expiry. Return PaymentStart(settled=True) if the order is settled now")


def check_shipping_provider(cls, settings: Mapping[str, Any] | None = None,
                            carts: list[Cart] | None = None,
                            addresses: list[Address] | None = None) -> ShippingProvider:
    """Assert that `cls` keeps the shipping provider contract; returns an instance.

    Checks name, kind, that `settings_schema` loads `settings`, that `supports()` answers a
    `Support` and that `quote()` is an integer from 0 to MAX_MONEY (minor units) whenever
    `supports()` said yes, for a range of carts and addresses.
    """
    provider = _instantiate(cls, ShippingProvider, "shipping", settings or {})
    assert not inspect.iscoroutinefunction(provider.quote), f"{cls.__name__}.quote must not be async"
    for cart in carts or _sample_carts():
        for address in addresses or [make_address(), make_address(id=2, country="DE", city="Berlin")]:
            sample = f"the sample cart {_describe_cart(cart)} to {address.country}"
            who = f"{cls.__name__}.supports()"
            support = _call(who, sample, provider.supports, cart, address)
            _assert_support(support, who, sample)
            if support:
                cost = _call(f"{cls.__name__}.quote()", sample, provider.quote, cart, address)
                assert isinstance(cost, int) and not isinstance(cost, bool) and cost >= 0, (
                    f"{cls.__name__}.quote() must return a non-negative int (minor units), "
                    f"got {cost!r} on {sample}")
                assert cost <= MAX_MONEY, (
                    f"{cls.__name__}.quote() must return at most MAX_MONEY ({MAX_MONEY}), "
                    f"got {cost!r} on {sample}")
    return provider


# -- payment gateway plugins: provider unit tests against a fake gateway

def load_provider(cls, settings: Mapping[str, Any], method_id: int = 1, title: str | None = None) -> Provider:
    """An instance of `cls` for a method with `settings`, loaded through its schema as the config is."""
    loaded = cls.settings_schema().load(dict(settings))
    return cls(Method(method_id, title or f"Test {cls.name}", cls.kind), loaded)


@contextlib.asynccontextmanager
async def provider_on_fake(cls, make_app: Callable, settings: Mapping[str, Any],
                           method_id: int = 1) -> AsyncIterator[tuple[Provider, RunningFake]]:
    """A started provider whose `base_url` setting points at a running fake gateway: (provider, fake)."""
    async with run_fake(make_app) as fake:
        provider = load_provider(cls, {**settings, "base_url": fake.base_url}, method_id)
        await provider.startup()
        try:
            yield provider, fake
        finally:
            await provider.close()


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


async def start_payment(provider: PaymentProvider, order: OrderInfo,
                        urls: PaymentUrls | None = None) -> tuple[PaymentStart, OrderInfo]:
    """`provider.start(order)`, and the order as the core then stores it (`payment` = start.data)."""
    start = await provider.start(order, urls or make_urls(provider.method.id, order.order_key))
    return start, dataclasses.replace(order, payment=start.data)


def query_params(url: str) -> dict[str, str]:
    """The query string of `url` as {name: first value}."""
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def unused_url() -> str:
    """`http://127.0.0.1:<port>` where nothing listens: a gateway that refuses connections."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# -- payment gateway plugins: end-to-end tests through the app and a fake gateway

SHOP_URL = "http://api.shop.test"  # the shop's public address ([site] base_url) in gateway_shop
RETURN_URL = "http://shop.test/orders/{order_key}?payment={result}"  # [site] return_url there
COURIER_ID = 1


class CourierSettings(NoSettings):
    cost = fields.Integer(strict=True, load_default=500, validate=validate.Range(min=0))


class FixedRateCourier(ShippingProvider):
    """Ships any cart anywhere for `cost` (default 500): a shipping method for payment tests."""

    name = "test_courier"
    settings_schema = CourierSettings

    def quote(self, cart: Cart, address: Address) -> int:
        return self.settings["cost"]


class CourierPlugin:
    """Registers `FixedRateCourier`: pass it in `TestShop(plugins=[...])`."""

    @hookimpl
    def register_shipping_providers(register):
        register(FixedRateCourier)


async def return_to_shop(shop: TestShop, location: str, method_id: int | None = None) -> Response:
    """The browser following a gateway's redirect to the shop's return URL (on any host)."""
    parts = urlsplit(location)
    expected = reverse_url(RETURN_ROUTE, method_id if method_id is not None else "")
    assert parts.path.startswith(expected), f"the gateway sent the shopper to {location}, not {expected}"
    return await shop.request("GET", f"{parts.path}?{parts.query}")


async def follow_next_step(shop: TestShop, next_step: str, choice: str = "approve",
                           method_id: int | None = None) -> Response:
    """The shopper on a fake gateway's page (`next_step`): press `choice`, come back to the shop."""
    return await return_to_shop(shop, await shopper_choice(next_step, choice), method_id)


async def units_held_by_orders(storage) -> dict[int, int]:
    """{product id: units in its HOLD and PROCESSING orders}: the stock ledger's other side."""
    held: dict[int, int] = {}
    for order in await storage.orders.holding_units():
        for product, quantity in order.lines.items():
            held[product] = held.get(product, 0) + quantity
    return held


def stock_ledger_problem(product: dict, held: Mapping[int, int]) -> str | None:
    """What is wrong with `product`'s ledger (received == stock + `held` units), or None."""
    pid = product["_id"]
    if product["received"] == product["stock"] + held.get(pid, 0):
        return None
    return f"product {pid}: received {product['received']} != stock {product['stock']} + held by orders {held.get(pid, 0)}"


async def assert_consistent(shop: TestShop, order_key: str | None, *, customer: Customer,
                            stock: Mapping[int, int], cart: Mapping[int, int],
                            status: str | None = None) -> None:
    """Assert that the shop agrees with itself and with the test after a payment step.

    - The stock ledger holds for every product: received == stock + units held by HOLD and
      PROCESSING orders.
    - `stock` ({product id: units on the shelf}) and the customer's `cart` ({product id:
      quantity}) are as given.
    - With `order_key`: the order has `status` and left HOLD at most once (its history is HOLD,
      then `status` unless that is HOLD). Without: the customer has no HOLD or PROCESSING order.
    """
    assert (order_key is None) == (status is None), "give the order's status with its key, or neither"
    held = await units_held_by_orders(shop.storage)
    products = await shop.storage.products.all()
    problems = [problem for product in products if (problem := stock_ledger_problem(product, held))]
    for product in products:
        pid = product["_id"]
        if pid in stock and product["stock"] != stock[pid]:
            problems.append(f"product {pid}: stock {product['stock']}, expected {stock[pid]}")
    for pid in set(stock) - {product["_id"] for product in products}:
        problems.append(f"product {pid} does not exist")
    stored_cart = (await shop.storage.customers.get(customer.id))["cart"]
    if {int(pid): quantity for pid, quantity in stored_cart.items()} != dict(cart):
        problems.append(f"cart {stored_cart}, expected {dict(cart)}")
    if order_key is None:
        open_orders = await shop.storage.orders.holding_units(customer.id)
        if open_orders:
            problems.append(f"orders left open: {[(o.key, str(o.status)) for o in open_orders]}")
    else:
        order = await shop.storage.orders.get(order_key)
        history = ["HOLD"] if status == "HOLD" else ["HOLD", status]
        if order is None:
            problems.append(f"no order {order_key}")
        elif (order.status, [h["status"] for h in order.history]) != (status, history):
            problems.append(f"order {order_key}: {order.status} after {[h['status'] for h in order.history]}"
                            f", expected {status} after {history}")
    assert not problems, "shop inconsistent:\n" + "\n".join(problems)


@dataclass
class GatewayShop:
    """A `TestShop` whose payment method talks to a running fake gateway, and a shopper.

    The customer has `quantity` units of one product (`stock` on the shelf before checkout)
    in the cart. The `assert_*` helpers are `assert_consistent` for the four places a payment
    can leave things.
    """

    shop: TestShop
    fake: RunningFake
    customer: Customer
    method_id: int
    product_id: int
    stock: int
    quantity: int

    async def checkout(self, **extra) -> Response:
        return await self.customer.checkout(self.method_id, COURIER_ID, **extra)

    async def back_to_shop(self, location: str) -> Response:
        """The browser following the gateway's redirect to this method's return URL."""
        return await return_to_shop(self.shop, location, self.method_id)

    async def follow(self, next_step: str, choice: str = "approve") -> Response:
        """Press `choice` on the fake's page at `next_step` and come back to the shop."""
        return await follow_next_step(self.shop, next_step, choice, self.method_id)

    async def notify(self, headers: Mapping[str, str], body: bytes) -> Response:
        """The gateway posting a notification to this method's notify URL."""
        return await self.shop.request("POST", reverse_url(NOTIFY_ROUTE, self.method_id),
                                       raw_body=body, headers=dict(headers))

    async def last_order_key(self) -> str:
        """The key of the customer's latest order."""
        latest = await self.shop.storage.orders.list_for_customer(self.customer.id, limit=1)
        assert latest, "the customer has no order"
        return latest[0]["_id"]

    @staticmethod
    def result_url(order_key: str, result: str) -> str:
        """Where the shop sends the shopper back to the storefront (`RETURN_URL`)."""
        return RETURN_URL.format(order_key=order_key, result=result)

    async def assert_checkout_unavailable(self) -> None:
        """Checkout answers 503 (the payment service is unavailable) and loses nothing."""
        r = await self.checkout()
        assert r.status == 503 and "payment service" in r.body["error"], r
        await self.assert_no_order()

    async def assert_paid(self, order_key: str) -> None:
        """PROCESSING: the units left the shelf, the cart is empty."""
        await self._assert(order_key, "PROCESSING", self.stock - self.quantity, {})

    async def assert_held(self, order_key: str) -> None:
        """Still HOLD: the units are held, the cart is intact."""
        await self._assert(order_key, "HOLD", self.stock - self.quantity, {self.product_id: self.quantity})

    async def assert_cancelled(self, order_key: str) -> None:
        """CANCELLED: every unit is back on the shelf, the cart is intact."""
        await self._assert(order_key, "CANCELLED", self.stock, {self.product_id: self.quantity})

    async def assert_no_order(self) -> None:
        """Nothing happened: no open order, stock and cart as before the checkout."""
        await self._assert(None, None, self.stock, {self.product_id: self.quantity})

    async def _assert(self, order_key, status, stock, cart) -> None:
        await assert_consistent(self.shop, order_key, customer=self.customer, status=status,
                                stock={self.product_id: stock}, cart=cart)


@contextlib.asynccontextmanager
async def gateway_shop(plugin, make_app: Callable, provider: str, settings: Mapping[str, Any], *,
                       method_id: int = 1, currency: str = "EUR", price: int = 2_000, stock: int = 5,
                       quantity: int = 2, gateway_url: str | None = None) -> AsyncIterator[GatewayShop]:
    """Run `make_app`'s fake gateway and a TestShop with one `provider` method on it.

    The method's settings are `settings` plus `base_url`: the fake's, or `gateway_url` (say
    `unused_url()`, a gateway refusing connections). The shop sells in `currency`, ships with
    `FixedRateCourier` (method `COURIER_ID`, 500), says it lives at `SHOP_URL` (the return URL
    the gateway gets is there; `back_to_shop` carries the browser to the test server) and sends
    shoppers back to `RETURN_URL`.
    """
    config = {
        "site": {"currency": currency, "return_url": RETURN_URL, "base_url": SHOP_URL},
        "payment_methods": [{"id": method_id, "provider": provider, "title": f"Test {provider}",
                             "settings": dict(settings)}],
        "shipping_methods": [{"id": COURIER_ID, "provider": FixedRateCourier.name, "title": "Courier"}],
    }
    async with run_fake(make_app) as fake:
        config["payment_methods"][0]["settings"]["base_url"] = gateway_url or fake.base_url
        async with TestShop(config=config, plugins=[plugin, CourierPlugin]) as shop:
            product = await shop.product(price=price, stock=stock)
            customer = await shop.customer(cart={product["_id"]: quantity})
            yield GatewayShop(shop, fake, customer, method_id, product["_id"], stock, quantity)
