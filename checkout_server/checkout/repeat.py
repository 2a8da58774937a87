"""A repeat checkout of an unchanged cart: answered with the customer's last order.

The cart's fingerprint (written with the lock's release as `last_checkout`) tells a repeat.
CONTRACT.md: a second checkout of an unchanged cart whose order is still HOLD creates no
second order; it answers with that order's `next_step`. That holds until the order leaves
HOLD, close to its expiry too: the sweeper asks the gateway before it cancels an expired
hold, so a shopper who pays late is settled, never charged for a second order.
"""

from __future__ import annotations

import hashlib
import json

from checkout_server.checkout.answers import answer_for, finish_paid
from checkout_server.checkout.lock import CheckoutLock
from checkout_server.checkout.rules import refusal, request_choices
from checkout_server.storage.models import OrderStatus, StockState


def checkout_fingerprint(customer: dict) -> str:
    """The cart (product -> quantity) only: a repeat of an unchanged cart has the same one.

    The body is left out on purpose (CONTRACT.md): a second checkout of an unchanged cart
    whose order is still HOLD answers with that order, whatever its notes, address or
    methods say, instead of holding the same stock twice.
    """
    cart = {str(p): int(q) for p, q in (customer.get("cart") or {}).items() if int(q) > 0}
    return hashlib.sha256(json.dumps({"cart": cart}, sort_keys=True, default=str).encode()).hexdigest()


async def repeat_answer(storage, table, lock: CheckoutLock, fingerprint: str, request: dict) -> dict | None:
    """The answer for a repeat of the customer's last checkout of this same cart, or None.

    - its order still HOLD: its `next_step`;
    - its order PROCESSING (paid at once) but its items not yet out of the cart (that
      write failed): its `order_key`, after finishing what the failure left undone.
    Anything else (another cart, a cancelled or finished order) places a new order. A repeat
    is answered only for a request the normal path would accept as to its address and
    methods (`_refuse_bad_repeat`); its stock is not checked again: the order holds it.
    """
    customer = lock.customer
    previous = customer.get("last_checkout") or {}
    if previous.get("fingerprint") != fingerprint or not previous.get("order_key"):
        return None
    order = await storage.orders.get(previous["order_key"])
    if order is None or order.customer != customer["_id"]:
        return None
    if order.status == OrderStatus.HOLD and order.stock == StockState.HELD:
        _refuse_bad_repeat(customer, request, table)
        return answer_for(order)
    if (order.status == OrderStatus.PROCESSING and order.stock == StockState.HELD
            and order.key not in (customer.get("cleared") or {})):
        _refuse_bad_repeat(customer, request, table)
        await finish_paid(storage, order, lock)
        return answer_for(order)
    return None


def _refuse_bad_repeat(customer: dict, request: dict, table) -> None:
    """A repeat answers only a body the normal path would accept as to address and methods.

    The same 400 as the normal path's; the stock is not checked again (the repeated
    order holds its units), nor whether the methods serve the cart: the repeat answers the
    order as it was placed, whatever methods the body names (CONTRACT.md).
    """
    problems: dict[str, list[str]] = {}
    request_choices(customer, request, table, lambda field, message: problems.setdefault(field, []).append(message))
    if problems:
        raise refusal(problems)
