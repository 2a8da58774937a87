"""The one idempotent settle step: a HOLD order becomes PROCESSING or CANCELLED, once.

Returns from the gateway, notifications and hold expiry all end here. They may race each
other and repeat themselves; the single guarded status transition decides one winner, and
only the winner does the side effects (stock, cart).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from checkout_server.plugin.providers import (
    GatewayError,
    OrderInfo,
    PaymentCheck,
    PaymentState,
)
from checkout_server.stock import reservations

log = logging.getLogger(__name__)

PAID, FAILED, PENDING = "paid", "failed", "pending"


@dataclass(frozen=True)
class Settlement:
    result: str  # "paid", "failed" or "pending": what the order's payment came to
    order: dict  # the order as it is now
    changed: bool  # whether this call moved it


def result_of(order: dict) -> str:
    """An order's payment outcome as the shopper's return URL shows it."""
    return {"PROCESSING": PAID, "CANCELLED": FAILED}.get(order.get("status"), PENDING)


def order_info(order: dict) -> OrderInfo:
    """An order as its payment provider sees it."""
    billing = order.get("billing") or {}
    count = sum(int(item["quantity"]) for item in order.get("items", []))
    return OrderInfo(
        order_key=order["_id"],
        total=int(order["total"]),
        currency=order["currency"],
        customer_id=int(order["customer"]),
        email=billing.get("email"),
        phone=billing.get("phone"),
        name=billing.get("name") or "",
        description=f"Order {order['_id']}: {count} item{'s' if count != 1 else ''}",
        payment=dict((order.get("payment") or {}).get("data") or {}),
        attempt_id=str((order.get("payment") or {}).get("attempt") or ""),
    )


def method_for(table, order: dict):
    """The payment method that can speak for `order`'s payment, or None.

    That is the method configured under the order's `payment_method` id AND bound to the
    provider that took the payment (`payment.provider`). A reload may remove the id or give
    it to another provider: then nobody can be asked about the payment, and the new
    provider's answer about somebody else's payment must never settle it (a PENDING or
    FAILED from it would cancel an order paid elsewhere). Callers treat None alike: the
    order stays as it is, logged with `no_method_reason`.
    """
    method = table.payment.get(order.get("payment_method")) if table is not None else None
    if method is None:
        return None
    took = (order.get("payment") or {}).get("provider")
    # An order without the record (none was ever written without it) is trusted by its id.
    if took and method.provider.name != took:
        return None
    return method


def no_method_reason(table, order: dict) -> str:
    """Why `method_for` found no method, for the ERROR its caller logs (ids and providers)."""
    method_id = order.get("payment_method")
    took = (order.get("payment") or {}).get("provider") or "unknown"
    method = table.payment.get(method_id) if table is not None else None
    if method is None:
        return f"its payment method {method_id} (provider {took}) is not configured any more"
    return (f"its payment method {method_id} is now provider {method.provider.name}, not {took}, "
            f"which took its payment")


async def ask_gateway(method, order: dict) -> PaymentCheck | None:
    """`method.provider.check(order)`, or None when it gave no usable answer; never raises.

    None: the gateway could not be reached (`GatewayError`), the provider failed, or it
    answered something other than a PaymentCheck. Each is logged; nothing may be decided on it.
    """
    key = order["_id"]
    try:
        check = await method.provider.check(order_info(order))
    except (GatewayError, TimeoutError) as exc:
        reason = str(exc) or "timed out"
        log.warning("order %s: payment method %s could not be asked about the payment: %s",
                    key, method.id, reason)
        return None
    except Exception:  # a plugin bug decides nothing either
        log.exception("order %s: payment method %s failed to check the payment", key, method.id)
        return None
    if not isinstance(check, PaymentCheck):
        log.error("order %s: payment method %s: check() returned %r, not a PaymentCheck",
                  key, method.id, check)
        return None
    return check


def _verdict(order: dict, check: PaymentCheck) -> tuple[str, str]:
    """(target status or "", reason) for what the gateway said."""
    if check.state is PaymentState.PAID:
        if check.amount == order["total"] and (check.currency or "").upper() == order["currency"]:
            return "PROCESSING", check.detail or "payment verified"
        return "CANCELLED", (f"amount mismatch: gateway reported {check.amount} {check.currency}, "
                             f"order total is {order['total']} {order['currency']}")
    if check.state is PaymentState.FAILED:
        return "CANCELLED", check.detail or "payment failed"
    return "", check.detail or "payment pending"


async def settle(storage, table, order: dict, check: PaymentCheck, by: str | None = None) -> Settlement:
    """Settle `order` on what its gateway said (`check`); safe to repeat and to race.

    - HOLD + PAID with `check.amount == order["total"]` and `check.currency ==
      order["currency"]` -> PROCESSING: the stock markers are committed and the ordered
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
    if order.get("status") != "HOLD":
        await _flag_paid_after_cancel(storage, order, check)
        return Settlement(result_of(order), order, False)
    target, reason = _verdict(order, check)
    if not target:
        return Settlement(PENDING, order, False)
    changes = {"status": target}
    if check.reference:
        changes["payment.reference"] = check.reference
    if check.state is PaymentState.PAID:
        changes["payment.captured"] = {"amount": check.amount, "currency": (check.currency or "").upper()}
    if target == "CANCELLED" and check.state is PaymentState.PAID:
        changes["payment.refund_needed"] = True  # paid, in another amount or currency
    history = {"status": target, "reason": reason}
    if by:
        history["by"] = by
    # `order` is the caller's copy: written from without a read unless it changed since.
    moved = await storage.orders.transition(
        order["_id"], {"status": "HOLD", "stock": "held"}, changes, history=history, current=order)
    if moved is None:
        current = await storage.orders.get(order["_id"]) or order
        await _flag_paid_after_cancel(storage, current, check)
        return Settlement(result_of(current), current, False)
    log.info("order %s: HOLD -> %s (%s)", moved["_id"], target, reason)
    if changes.get("payment.refund_needed"):
        log.error("order %s is CANCELLED but the gateway took a payment for it (%s): it needs a refund",
                  moved["_id"], reason)
    try:
        await reservations.fault_point("settled")
        if target == "PROCESSING":
            await reservations.finish_commit(storage, moved)
        else:
            await reservations.finish_release(storage, moved)
    except Exception:
        # The status has moved and is the answer; the reconciler finishes the stock and cart.
        log.exception("order %s: %s, but finishing its stock and cart failed; the reconciler "
                      "will finish it", moved["_id"], target)
    return Settlement(result_of(moved), moved, True)


REFUND_NEEDED = "payment received after the order was cancelled: refund needed"


async def _flag_paid_after_cancel(storage, order: dict, check: PaymentCheck) -> None:
    """The gateway took money for an order we cancelled: say so loudly, and mark the order once."""
    if check.state is not PaymentState.PAID or order.get("status") != "CANCELLED":
        return
    if (order.get("payment") or {}).get("captured"):
        # A payment we knew of (the order was paid, then cancelled and refunded by an admin):
        # a late report of it is no news.
        return
    reference = check.reference or (order.get("payment") or {}).get("reference")
    log.error("order %s is CANCELLED but its payment %s went through at the gateway (%s %s): "
              "it needs a refund", order["_id"], reference, check.amount, check.currency)
    if (order.get("payment") or {}).get("refund_needed"):
        return
    captured = {"amount": check.amount, "currency": (check.currency or "").upper()}
    await storage.orders.transition(order["_id"], {"status": "CANCELLED"},
                                    {"payment.refund_needed": True, "payment.captured": captured},
                                    history={"status": "CANCELLED", "reason": REFUND_NEEDED}, current=order)

