"""Gateway plugins: provider unit tests against a fake gateway, and end-to-end helpers that
run the app with one method on a running fake (`gateway_shop`, `GatewayShop`)."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from marshmallow import fields, validate

from checkout_server.handlers import reverse_url
from checkout_server.payments.return_tokens import NOTIFY_ROUTE, RETURN_ROUTE
from checkout_server.plugin.fake_gateway import RunningFake, run_fake, shopper_choice
from checkout_server.plugin.hookspecs import hookimpl
from checkout_server.plugin.providers import (
    Address,
    Cart,
    NoSettings,
    OrderInfo,
    PaymentProvider,
    PaymentStart,
    PaymentUrls,
    Provider,
    ShippingProvider,
)
from checkout_server.testing.shop import (
    Customer,
    Response,
    TestShop,
    load_provider,
    make_urls,
)

# -- payment gateway plugins: provider unit tests against a fake gateway

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
