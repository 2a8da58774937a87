"""The hooks a checkout-server plugin implements.

A plugin is a module (or object) with `@hookimpl` functions, found through the
`checkout_server` entry-point group. Each hook receives a `register` callback.
"""

import pluggy

hookspec = pluggy.HookspecMarker("checkout_server")
hookimpl = pluggy.HookimplMarker("checkout_server")

__all__ = [
    "hookimpl",
    "hookspec",
    "register_fake_gateways",
    "register_payment_providers",
    "register_routes",
    "register_shipping_providers",
]


@hookspec
def register_payment_providers(register):
    """Register payment provider classes: call `register(ProviderClass)` for each."""


@hookspec
def register_shipping_providers(register):
    """Register shipping provider classes: call `register(ProviderClass)` for each."""


@hookspec
def register_fake_gateways(register):
    """Register local fake gateways: `register(name, make_app)`, make_app(base_url) -> aiohttp.web.Application."""


@hookspec
def register_routes(register):
    """Add HTTP routes: `register(pattern, handler_class, kwargs=None)`; each handler class sets `auth`."""
