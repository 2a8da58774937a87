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
`start_payment` and `query_params`. `GatewayScenarios` (and `WebhookGatewayScenarios`, for a
gateway that sends notifications) is the end-to-end scenario suite every gateway plugin runs
against its own fake: subclass it in a test module, describe the gateway, and pytest runs
every scenario.

The kit, by what it offers (import everything from `checkout_server.testing`):
- `shop`: `TestShop`, its customers, and the value builders;
- `conformance`: `check_payment_provider`, `check_shipping_provider`;
- `gateways`: fake-gateway helpers for provider unit tests and end-to-end tests;
- `scenarios`: the gateway scenario suite; `refunds`: the refund scenarios.
"""

from __future__ import annotations

from checkout_server.config import ConfigError
from checkout_server.testing.conformance import (
    check_payment_provider,
    check_shipping_provider,
)
from checkout_server.testing.gateways import (
    COURIER_ID,
    RETURN_URL,
    SHOP_URL,
    CourierPlugin,
    CourierSettings,
    FixedRateCourier,
    GatewayShop,
    assert_consistent,
    follow_next_step,
    gateway_shop,
    provider_on_fake,
    query_params,
    return_to_shop,
    start_payment,
    stock_ledger_problem,
    units_held_by_orders,
    unused_url,
)
from checkout_server.testing.refunds import (
    REFUND_SCENARIOS,
    RefundScenarios,
    RefundSwitches,
    admin_cancel,
    admin_refund,
    paid_order,
)
from checkout_server.testing.scenarios import GatewayScenarios, WebhookGatewayScenarios
from checkout_server.testing.shop import (
    TEST_RETURN_TOKEN,
    Customer,
    Response,
    TestShop,
    load_provider,
    make_address,
    make_cart,
    make_order,
    make_urls,
    mongomock_storage,
)

__all__ = [
    "COURIER_ID",
    "REFUND_SCENARIOS",
    "RETURN_URL",
    "SHOP_URL",
    "TEST_RETURN_TOKEN",
    "ConfigError",
    "CourierPlugin",
    "CourierSettings",
    "Customer",
    "FixedRateCourier",
    "GatewayScenarios",
    "GatewayShop",
    "RefundScenarios",
    "RefundSwitches",
    "Response",
    "TestShop",
    "WebhookGatewayScenarios",
    "admin_cancel",
    "admin_refund",
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
    "paid_order",
    "provider_on_fake",
    "query_params",
    "return_to_shop",
    "start_payment",
    "stock_ledger_problem",
    "units_held_by_orders",
    "unused_url",
]
