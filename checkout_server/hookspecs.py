"""The hooks a checkout-server plugin implements.

A plugin is a module (or object) with `@hookimpl` functions, found through the
`checkout_server` entry-point group. Each hook receives a `register` callback.
"""

import pluggy

hookspec = pluggy.HookspecMarker("checkout_server")
hookimpl = pluggy.HookimplMarker("checkout_server")

__all__ = ["hookimpl", "hookspec", "register_payment_providers", "register_shipping_providers"]


@hookspec
def register_payment_providers(register):
    """Register payment provider classes: call `register(ProviderClass)` for each."""


@hookspec
def register_shipping_providers(register):
    """Register shipping provider classes: call `register(ProviderClass)` for each."""
