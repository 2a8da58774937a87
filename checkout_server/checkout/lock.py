"""The customer's checkout lock, and the time limits it sets for a checkout.

`LOCK_SECONDS` is read as `checkout_lock.LOCK_SECONDS` at call time everywhere, so that a
test replacing it changes the lock, a key's lease and the payment start's deadline together.
"""

from __future__ import annotations

import logging

# The checkout's logger, shared by its modules: one name to follow a checkout by.
log = logging.getLogger(__name__)

# One checkout per customer at a time; a lock left by a crashed process expires after this.
# Longer than any checkout takes: the payment start is cut off after `start_deadline()`
# (2/3 of the lock; gatewayhttp.MAX_TIMEOUT keeps a gateway's calls within it), the rest is
# a few database round trips. Shorter than reservations.STALE_AFTER, so the reconciler never
# races a live checkout. An Idempotency-Key's claim has the same lease.
LOCK_SECONDS = 90.0


def start_deadline() -> float:
    """Seconds `provider.start` may take before the checkout gives up (503): within the lock."""
    return LOCK_SECONDS * 2 / 3


class CheckoutLock:
    """One checkout's hold on its customer's checkout lock, released exactly once.

    `customer` is the customer document as read when the lock was taken: the checkout's
    one read of the customer.
    """

    def __init__(self, storage, customer: dict):
        self.storage = storage
        self.customer = customer
        self.held = True

    async def release(self, last_checkout: dict | None = None) -> None:
        if self.held:
            self.held = False
            # Guarded by the value we set: a lock that lapsed and was taken since is not ours.
            await self.storage.customers.release_checkout_lock(
                self.customer["_id"], last_checkout, as_read=self.customer,
                held=self.customer.get("checkout_lock"))

    async def release_quietly(self, last_checkout: dict | None = None) -> None:
        """`release`, logging a failure instead of raising it: the checkout's answer (or its
        own error) stands; a lock left behind lapses after LOCK_SECONDS."""
        try:
            await self.release(last_checkout)
        except Exception:
            log.exception("customer %s: could not release the checkout lock; it lapses in %g s",
                          self.customer["_id"], LOCK_SECONDS)


async def lock_customer(storage, customer_id: int) -> dict | None:
    """Take the lock of a customer already authenticated: the customer as read under it, or
    None while another checkout holds it. The lock's read is the checkout's read of the customer."""
    return await storage.customers.acquire_checkout_lock(customer_id, LOCK_SECONDS)


async def lock_customer_by_token(storage, token_hash: str) -> dict | None:
    """Authenticate and take the checkout lock in one update: the customer, or None.

    None: an unknown token or a checkout already running (`by_token_hash` tells which).
    A customer returned here is locked: pass it to `checkout_cart(..., locked=True)`.
    """
    return await storage.customers.acquire_checkout_lock_by_token(token_hash, LOCK_SECONDS)
