"""The public API for plugin authors: everything a provider package imports from the core.

    from checkout_server.plugin import hookimpl, PaymentProvider, PaymentStart, ...

Plugins import only this package and `checkout_server.testing`; every other module of the
core may change without notice. The modules behind these names:

- `hookspecs`: `hookimpl` and the hooks a plugin implements;
- `providers`: provider base classes, their value types and errors;
- `gateway_http`: `GatewayClient`, the HTTP client a provider talks to its gateway with;
- `fake_gateway`: the kit for writing a local fake of a gateway;
- `web`: `BaseHandler` and `APIError` for a plugin's own routes;
- `api_docs`: `api_operation`, declaring a route's schemas for the OpenAPI document;
- `PluginDocuments`: a plugin's own documents, handed out by the core to its providers
  (`provider.documents`) and its routes (`handler.documents`).
"""

from checkout_server.plugin.api_docs import PATH_ID, api_operation
from checkout_server.plugin.fake_gateway import (
    STATE,
    FakeState,
    Faults,
    RunningFake,
    add_payment_page,
    approval_page,
    fake_api,
    json_object,
    new_app,
    record_or_404,
    run_fake,
    shopper_choice,
    transport_faults,
    with_query,
)
from checkout_server.plugin.gateway_http import (
    GatewayAnswer,
    GatewayClient,
    GatewaySettings,
)
from checkout_server.plugin.hookspecs import hookimpl
from checkout_server.plugin.providers import (
    MAX_MONEY,
    Address,
    Cart,
    CartLine,
    GatewayError,
    Method,
    NoSettings,
    Notification,
    NotificationError,
    OrderInfo,
    PaymentCheck,
    PaymentProvider,
    PaymentStart,
    PaymentState,
    PaymentUrls,
    Provider,
    ProviderError,
    Refund,
    RefundNotSupported,
    RefundRequest,
    RefundState,
    ShippingProvider,
    Site,
    Support,
)
from checkout_server.plugin.web import APIError, BaseHandler
from checkout_server.storage.plugin_documents import DocumentExists, PluginDocuments

__all__ = [
    "MAX_MONEY",
    "PATH_ID",
    "STATE",
    "APIError",
    "Address",
    "BaseHandler",
    "Cart",
    "CartLine",
    "DocumentExists",
    "FakeState",
    "Faults",
    "GatewayAnswer",
    "GatewayClient",
    "GatewayError",
    "GatewaySettings",
    "Method",
    "NoSettings",
    "Notification",
    "NotificationError",
    "OrderInfo",
    "PaymentCheck",
    "PaymentProvider",
    "PaymentStart",
    "PaymentState",
    "PaymentUrls",
    "PluginDocuments",
    "Provider",
    "ProviderError",
    "Refund",
    "RefundNotSupported",
    "RefundRequest",
    "RefundState",
    "RunningFake",
    "ShippingProvider",
    "Site",
    "Support",
    "add_payment_page",
    "api_operation",
    "approval_page",
    "fake_api",
    "hookimpl",
    "json_object",
    "new_app",
    "record_or_404",
    "run_fake",
    "shopper_choice",
    "transport_faults",
    "with_query",
]
