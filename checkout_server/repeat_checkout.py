"""A repeat checkout of an unchanged cart: answered with the customer's last order.

The cart's fingerprint (written with the lock's release as `last_checkout`) tells a repeat;
the last order answers it while it may still be paid, and one close to expiry is settled on
its gateway's word first, so that a lost response never makes the shopper pay twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta

from . import checkout_lock, clock
from .checkout_answers import CheckoutError, answer_for, finish_paid
from .checkout_lock import CheckoutLock
from .checkout_rules import refusal, request_choices
from .providers import PaymentState
from .settlement import FAILED, PAID, ask_gateway, method_for, no_method_reason, settle

# The checkout's logger, shared by its modules: one name to follow a checkout by.
log = logging.getLogger("checkout_server.checkout")

# A repeat checkout of an unchanged cart answers its HOLD order only while the hold has at
# least `reuse_hold_min_left` to run: a shopper sent to pay should have the time to, and the
# sweeper cancels an expired hold at its next pass. Closer to expiry the old order's gateway
# is asked first (it may have been paid, its return lost), and only an order that will never
# be paid is replaced. At most this long, and at most half the hold: with a short
# `hold_minutes` an immediate retry must still find its order.
REUSE_HOLD_MIN_LEFT = timedelta(minutes=5)

PREVIOUS_STILL_PROCESSING = ("your previous payment for this cart is still being processed; "
                             "try again in a few minutes")


def reuse_hold_min_left(hold_minutes: int) -> timedelta:
    """How long a HOLD order must still have to run for a repeat to answer it as it is."""
    return min(REUSE_HOLD_MIN_LEFT, timedelta(minutes=hold_minutes) / 2)


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

    - its order still HOLD with at least `reuse_hold_min_left` to go: its `next_step`;
    - HOLD with less left: its gateway is asked (`_settle_previous`): paid -> its
      `order_key`; undecided -> 409; never paid -> cancelled, and a new order is placed;
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
    if order is None or order.get("customer") != customer["_id"]:
        return None
    if order.get("status") == "HOLD" and order.get("stock") == "held":
        _refuse_bad_repeat(customer, request, table)
        if _as_utc(order.get("hold_until")) - clock.utcnow() >= reuse_hold_min_left(table.site.hold_minutes):
            return answer_for(order)
        return await _settle_previous(storage, table, order)
    if (order.get("status") == "PROCESSING" and order.get("stock") == "held"
            and order["_id"] not in (customer.get("cleared") or {})):
        _refuse_bad_repeat(customer, request, table)
        await finish_paid(storage, order, lock)
        return answer_for(order)
    return None


async def _settle_previous(storage, table, order: dict) -> dict | None:
    """A repeat's HOLD order close to expiry: settle it on its gateway's word before replacing it.

    The shopper may have paid and lost the return: a new order would make them pay twice.
    PAID -> settled (the cart cleared), its `order_key` answers; FAILED -> cancelled (units
    back), None: a new order is placed; PENDING, the gateway unreachable, or a method nobody
    can ask (removed or given to another provider by a reload) -> 409, the order untouched.
    """
    method = method_for(table, order)
    if method is None:
        log.error("order %s: %s; a repeat checkout of its cart waits for it", order["_id"],
                  no_method_reason(table, order))
        raise CheckoutError(409, PREVIOUS_STILL_PROCESSING)
    check = await ask_gateway(method, order, timeout=checkout_lock.start_deadline())
    if check is None or check.state is PaymentState.PENDING:
        raise CheckoutError(409, PREVIOUS_STILL_PROCESSING)
    if check.state is PaymentState.FAILED and not check.detail:
        check = dataclasses.replace(check, detail="replaced by a new checkout of the same cart")
    outcome = await settle(storage, table, order, check)
    if outcome.result == PAID:
        return answer_for(outcome.order)
    if outcome.result == FAILED:
        return None
    raise CheckoutError(409, PREVIOUS_STILL_PROCESSING)  # still HOLD (a racing writer)


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


def _as_utc(value) -> datetime:
    """A stored datetime, zone-aware (some drivers read them back naive, in UTC)."""
    if not isinstance(value, datetime):
        return datetime.min.replace(tzinfo=UTC)  # unreadable: treat the hold as over
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
