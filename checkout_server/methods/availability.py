"""Which configured methods can serve a cart: provider answers, checked and never raising.

A provider is third-party code. If it raises inside `supports` or `quote`, or answers
something that is not a `Support` or an integer from 0 to MAX_MONEY (checked and logged by
`payments.provider_calls`), its method is unavailable for that cart: a plugin bug never
becomes a 500 for the shopper.
"""

from __future__ import annotations

from checkout_server.payments import provider_calls
from checkout_server.payments.provider_calls import ProviderCallError
from checkout_server.plugin.providers import Address, Cart, Support

# The reason shown to shoppers when a provider misbehaves; details go to the log only.
FAULT_REASON = "this method is unavailable right now"


def payment_support(bound_method, cart: Cart) -> Support:
    """Whether this payment method supports `cart`; never raises."""
    try:
        support = provider_calls.supports(bound_method, cart)
    except ProviderCallError:  # logged by provider_calls
        return Support.no(FAULT_REASON)
    return _explained(support)


def shipping_offer(bound_method, cart: Cart, address: Address) -> tuple[Support, int | None]:
    """Whether this shipping method serves `cart` to `address`, and its cost; never raises.

    Returns `(Support.yes(), cost)` or `(Support.no(reason), None)`.
    """
    try:
        support = _explained(provider_calls.supports(bound_method, cart, address))
        if not support:
            return support, None
        return support, provider_calls.quote(bound_method, cart, address)
    except ProviderCallError:  # logged by provider_calls
        return Support.no(FAULT_REASON), None


def _explained(support: Support) -> Support:
    """A refusal always says why."""
    if not support.ok and not support.reason:
        return Support.no("this method does not support your cart")
    return support
