"""An order's return token, and the gateway URLs whose return URL carries it.

The return endpoint is public and order keys are sequential: only a request carrying the
token (the shopper's browser, sent back by the gateway) may settle the order there. The
order stores only the token's hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from checkout_server.plugin.providers import PaymentUrls
from checkout_server.storage.models import Order

# The names of the return and notify routes in the route table (handlers/checkout.py):
# their paths are spelled there only, and built from it with Tornado's `reverse_url`.
RETURN_ROUTE = "payment_return"
NOTIFY_ROUTE = "payment_notify"


def payment_urls(site, reverse_url, method_id: int, order_key: str, return_token: str) -> PaymentUrls:
    """The gateway's URLs; the return URL carries the order's return token (`rt`).

    `reverse_url(name, *args)`: the application's (a handler's `self.reverse_url`).
    """
    base = site.base_url
    return PaymentUrls(return_url=f"{base}{reverse_url(RETURN_ROUTE, method_id)}?order={order_key}"
                                  f"&rt={return_token}",
                       notify_url=f"{base}{reverse_url(NOTIFY_ROUTE, method_id)}")


def new_return_token() -> tuple[str, str]:
    """(token for the return URL, its hash for the order): unguessable, one per order."""
    token = secrets.token_urlsafe(16)
    return token, _return_token_hash(token)


def _return_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def return_token_matches(order: Order, token: str) -> bool:
    """Whether `token` is this order's return token (constant time; an order without one never matches)."""
    stored = order.return_token
    if not isinstance(stored, str) or not token:
        return False
    return hmac.compare_digest(_return_token_hash(token).encode(), stored.encode())
