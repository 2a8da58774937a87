"""The one idempotent settle step: a HOLD order becomes PROCESSING or CANCELLED, once.

Returns from the gateway, notifications and hold expiry all end here. They may race each
other and repeat themselves; the single guarded status transition decides one winner, and
only the winner does the side effects (stock, cart).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from checkout_server.observability import metrics
from checkout_server.payments import provider_calls
from checkout_server.payments.provider_calls import ProviderCallError, order_info  # noqa: F401 -- plugins' tests import it here
from checkout_server.plugin.providers import PaymentCheck, PaymentState
from checkout_server.stock import reservations
from checkout_server.storage.models import Order, OrderStatus, StockState

log = logging.getLogger(__name__)

PAID, FAILED, PENDING = "paid", "failed", "pending"


@dataclass(frozen=True)
class Settlement:
    result: str  # "paid", "failed" or "pending": what the order's payment came to
    order: Order  # the order as it is now
    changed: bool  # whether this call moved it


def result_of(order: Order) -> str:
    """An order's payment outcome as the shopper's return URL shows it."""
    return {OrderStatus.PROCESSING: PAID, OrderStatus.CANCELLED: FAILED}.get(order.status, PENDING)


def method_for(table, order: Order):
    """The payment method that can speak for `order`'s payment, or None.

    That is the method configured under the order's `payment_method` id AND bound to the
    provider that took the payment (`payment.provider`). A reload may remove the id or give
    it to another provider: then nobody can be asked about the payment, and the new
    provider's answer about somebody else's payment must never settle it (a PENDING or
    FAILED from it would cancel an order paid elsewhere). Callers treat None alike: the
    order stays as it is, logged with `no_method_reason`.
    """
    method = table.payment.get(order.payment_method) if table is not None else None
    if method is None:
        return None
    took = order.payment.provider
    # An order without the record (none was ever written without it) is trusted by its id.
    if took and method.provider.name != took:
        return None
    return method


def no_method_reason(table, order: Order) -> str:
    """Why `method_for` found no method, for the ERROR its caller logs (ids and providers)."""
    method_id = order.payment_method
    took = order.payment.provider or "unknown"
    method = table.payment.get(method_id) if table is not None else None
    if method is None:
        return f"its payment method {method_id} (provider {took}) is not configured any more"
    return (f"its payment method {method_id} is now provider {method.provider.name}, not {took}, "
            f"which took its payment")


async def ask_gateway(method, order: Order) -> PaymentCheck | None:
    """`provider_calls.check`, or None when it gave no usable answer (logged there); never raises.

    None: the gateway could not be reached, the provider failed or refused, or it answered
    something other than a PaymentCheck. Nothing may be decided on it.
    """
    try:
        return await provider_calls.check(method, order)
    except ProviderCallError:
        return None


def _verdict(order: Order, check: PaymentCheck) -> tuple[OrderStatus | None, str]:
    """(target status or None, reason) for what the gateway said."""
    if check.state is PaymentState.PAID:
        if check.amount == order.total and (check.currency or "").upper() == order.currency:
            return OrderStatus.PROCESSING, check.detail or "payment verified"
        return OrderStatus.CANCELLED, (f"amount mismatch: gateway reported {check.amount} {check.currency}, "
                                       f"order total is {order.total} {order.currency}")
    if check.state is PaymentState.FAILED:
        return OrderStatus.CANCELLED, check.detail or "payment failed"
    return None, check.detail or "payment pending"


@metrics.counted_settlement
async def settle(storage, table, order: Order, check: PaymentCheck, by: str | None = None) -> Settlement:
    """Settle `order` on what its gateway said (`check`); safe to repeat and to race.

    - HOLD + PAID with `check.amount == order.total` and `check.currency ==
      order.currency` -> PROCESSING: the stock markers are committed and the ordered
      quantities leave the customer's cart (lines added since stay);
    - HOLD + FAILED, or PAID with another amount or currency -> CANCELLED: every unit goes
      back, exactly once (a payment taken in another amount is flagged `payment.refund_needed`);
    - HOLD + PENDING -> stays HOLD;
    - an order that already left HOLD is not changed; its result is reported. A CANCELLED
      order that the gateway reports PAID (a capture that lost a race with a cancel) is
      logged as an ERROR and flagged `payment.refund_needed`: the shopper's money is held.

    Exactly one concurrent caller wins the transition (`orders.transition` guarded by
    `{"status": "HOLD", "stock": "held"}`) and only it does the side effects; an order whose
    checkout is still recording its payment (`stock: "reserving"`) reads as pending.
    `table` is the method table in use (kept for providers' needs; may be None); `by` says
    in the order's history who settled it ("shopper's return", "hold expiry", "admin"...).
    A PAID check records what was captured (`payment.captured`: amount and currency), the
    ceiling of any refund.
    """
    if order.status != OrderStatus.HOLD:
        await _flag_paid_after_cancel(storage, order, check)
        return Settlement(result_of(order), order, False)
    target, reason = _verdict(order, check)
    if target is None:
        return Settlement(PENDING, order, False)
    changes = {"status": target}
    if check.reference:
        changes["payment.reference"] = check.reference
    if check.state is PaymentState.PAID:
        changes["payment.captured"] = {"amount": check.amount, "currency": (check.currency or "").upper()}
    if target == OrderStatus.CANCELLED and check.state is PaymentState.PAID:
        changes["payment.refund_needed"] = True  # paid, in another amount or currency
    history = {"status": target, "reason": reason}
    if by:
        history["by"] = by
    # `order` is the caller's copy: written from without a read unless it changed since.
    moved = await storage.orders.transition(
        order.key, {"status": OrderStatus.HOLD, "stock": StockState.HELD}, changes, history=history, current=order)
    if moved is None:
        current = await storage.orders.get(order.key) or order
        await _flag_paid_after_cancel(storage, current, check)
        return Settlement(result_of(current), current, False)
    log.info("order %s: HOLD -> %s (%s)", moved.key, target, reason)
    if changes.get("payment.refund_needed"):
        log.error("order %s is CANCELLED but the gateway took a payment for it (%s): it needs a refund",
                  moved.key, reason)
    try:
        await reservations.fault_point("settled")
        if target == OrderStatus.PROCESSING:
            await reservations.finish_commit(storage, moved)
        else:
            await reservations.finish_release(storage, moved)
    except Exception:
        # The status has moved and is the answer; the reconciler finishes the stock and cart.
        log.exception("order %s: %s, but finishing its stock and cart failed; the reconciler "
                      "will finish it", moved.key, target)
    return Settlement(result_of(moved), moved, True)


REFUND_NEEDED = "payment received after the order was cancelled: refund needed"


async def _flag_paid_after_cancel(storage, order: Order, check: PaymentCheck) -> None:
    """The gateway took money for an order we cancelled: say so loudly, and mark the order once."""
    if check.state is not PaymentState.PAID or order.status != OrderStatus.CANCELLED:
        return
    if order.payment.captured:
        # A payment we knew of (the order was paid, then cancelled and refunded by an admin):
        # a late report of it is no news.
        return
    reference = check.reference or order.payment.reference
    log.error("order %s is CANCELLED but its payment %s went through at the gateway (%s %s): "
              "it needs a refund", order.key, reference, check.amount, check.currency)
    if order.payment.refund_needed:
        return
    captured = {"amount": check.amount, "currency": (check.currency or "").upper()}
    await storage.orders.transition(order.key, {"status": OrderStatus.CANCELLED},
                                    {"payment.refund_needed": True, "payment.captured": captured},
                                    history={"status": OrderStatus.CANCELLED, "reason": REFUND_NEEDED},
                                    current=order)

