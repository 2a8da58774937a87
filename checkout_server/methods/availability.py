"""Which configured methods can serve a cart: provider answers, checked and never raising.

A provider is third-party code. If it raises inside `supports` or `quote`, or answers
something that is not a `Support` or an integer from 0 to MAX_MONEY, its method is unavailable
for that cart and the fault is logged: a plugin bug never becomes a 500 for the shopper.
"""

from __future__ import annotations

import logging

from checkout_server.plugin.providers import MAX_MONEY, Address, Cart, Support

log = logging.getLogger(__name__)

# The reason shown to shoppers when a provider misbehaves; details go to the log only.
FAULT_REASON = "this method is unavailable right now"


def payment_support(bound_method, cart: Cart) -> Support:
    """Whether this payment method supports `cart`; never raises."""
    provider = bound_method.provider
    try:
        support = provider.supports(cart)
    except Exception:
        log.exception("payment method %s (%s): supports() raised", bound_method.id, provider.name)
        return Support.no(FAULT_REASON)
    return _checked_support(support, bound_method, "payment")


def shipping_offer(bound_method, cart: Cart, address: Address) -> tuple[Support, int | None]:
    """Whether this shipping method serves `cart` to `address`, and its cost; never raises.

    Returns `(Support.yes(), cost)` or `(Support.no(reason), None)`.
    """
    provider = bound_method.provider
    try:
        support = provider.supports(cart, address)
    except Exception:
        log.exception("shipping method %s (%s): supports() raised", bound_method.id, provider.name)
        return Support.no(FAULT_REASON), None
    support = _checked_support(support, bound_method, "shipping")
    if not support:
        return support, None
    try:
        cost = provider.quote(cart, address)
    except Exception:
        log.exception("shipping method %s (%s): quote() raised", bound_method.id, provider.name)
        return Support.no(FAULT_REASON), None
    # bool is an int subclass; True is not a price. Above MAX_MONEY the order could not be stored.
    if not isinstance(cost, int) or isinstance(cost, bool) or not 0 <= cost <= MAX_MONEY:
        log.error("shipping method %s (%s): quote() returned %r, not an integer from 0 to %d "
                  "in minor units", bound_method.id, provider.name, cost, MAX_MONEY)
        return Support.no(FAULT_REASON), None
    return support, cost


def _checked_support(support, bound_method, kind: str) -> Support:
    if not isinstance(support, Support):
        log.error("%s method %s (%s): supports() returned %r, not a Support",
                  kind, bound_method.id, bound_method.provider.name, support)
        return Support.no(FAULT_REASON)
    if not support.ok and not support.reason:
        return Support.no("this method does not support your cart")
    return support
