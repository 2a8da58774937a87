"""What a checkout answers: the answer for an order whose payment is recorded (a paid one
finished first), or a `CheckoutError`."""

from __future__ import annotations

import logging

from checkout_server.checkout.lock import CheckoutLock
from checkout_server.stock import commits
from checkout_server.storage.models import Order, OrderStatus

# The checkout's logger, shared by its modules: one name to follow a checkout by.
log = logging.getLogger(__name__)


class CheckoutError(Exception):
    """A checkout that ends in an error answer: `{"error": message}` (+ `fields`)."""

    def __init__(self, status: int, message: str, fields: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields

    def body(self) -> dict:
        body = {"error": self.message}
        if self.fields:
            body["fields"] = self.fields
        return body


def answer_for(order: Order) -> dict:
    """The checkout's answer for an order: where to pay, or its key."""
    if order.status == OrderStatus.HOLD and order.payment.next_step:
        return {"next_step": order.payment.next_step}
    return {"order_key": order.key}


async def finish_paid(storage, order: Order, lock: CheckoutLock) -> None:
    """A paid order's side effects, run by the checkout: the cart now, markers and `committed` soon.

    The order is paid: whatever fails here is logged and left to the reconciler (which
    finishes paid orders), and the checkout still answers with the order.
    """
    try:
        await commits.finish_commit_soon(storage, order, lock)
    except Exception:
        log.exception("order %s is paid, but finishing it failed; the reconciler will finish it", order.key)
