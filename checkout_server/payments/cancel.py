"""An admin cancels an order: once, whatever races it, with its money and units given back.

- HOLD: the gateway is asked first, as hold expiry asks it (`provider.cancel_payment`, which
  also closes the payment where the gateway can). Paid after all: the order is settled (it
  is PROCESSING now) and the cancel refused (409). Not paid: CANCELLED through the one
  settle step, units back. Still in flight, or the gateway unreachable: nothing changes.
- PROCESSING: what was captured and not refunded yet is refunded through the provider
  (`refunds.refund`), then the order is CANCELLED and its units taken back (restocked, or
  written off with `restock: false`). A refund refused or unreachable leaves the order as it
  was. `refund: false` cancels without refunding (the admin says no money needs to go back).
- CANCELLED: answered as it is; nothing is done twice.

Racing cancels, returns and notifications are decided by the guarded status transitions:
exactly one moves the order, and its history says what happened and who did it.
"""

from __future__ import annotations

import logging

from checkout_server.payments import provider_calls, refunds
from checkout_server.payments.provider_calls import GatewayTrouble, ProviderCallError
from checkout_server.payments.refunds import ActionError
from checkout_server.payments.settlement import PAID, settle
from checkout_server.payments.sweeper import can_check
from checkout_server.plugin.providers import PaymentCheck, PaymentState
from checkout_server.stock import reservations
from checkout_server.storage.models import OrderStatus, StockState

log = logging.getLogger(__name__)


async def cancel(storage, table, order_key: str, *, reason: str = "", restock: bool = True,
                 refund: bool = True, by: str = "admin") -> dict:
    """Cancel the order; the order as it is then. Raises `ActionError` (see the module)."""
    order = await refunds.get_order(storage, order_key)
    why = f"cancelled by {by}" + (f": {reason}" if reason else "")
    if order.status == OrderStatus.CANCELLED:
        return order
    if order.status == OrderStatus.HOLD:
        return await _cancel_hold(storage, table, order, why, by)
    return await _cancel_paid(storage, table, order, why, by, restock=restock, refund=refund)


async def _cancel_hold(storage, table, order: dict, why: str, by: str) -> dict:
    method = refunds.method_for(table, order)
    if method is None:
        # As at hold expiry: the payment may be complete at a gateway nobody can ask.
        raise ActionError(409, f"order {order.key}: {refunds.no_method_reason(table, order)}: its payment "
                               f"cannot be checked, so it is not cancelled")
    check = await call_cancel_payment(method, order)
    if check.state is PaymentState.PENDING:
        if can_check(method.provider):
            raise ActionError(409, f"order {order.key}: the gateway reports the payment still in flight "
                                   f"({check.detail or 'pending'}); try again later")
        check = PaymentCheck(PaymentState.FAILED, detail=why)  # it cannot be asked: as at hold expiry
    elif check.state is PaymentState.FAILED:
        check = PaymentCheck(PaymentState.FAILED, reference=check.reference,
                             detail=why + (f" (gateway: {check.detail})" if check.detail else ""))
    outcome = await settle(storage, table, order, check, by=by)
    if outcome.result == PAID:
        raise ActionError(409, f"order {order.key} is paid now (PROCESSING): the gateway reports the payment "
                               f"complete; cancel it again to refund it")
    return outcome.order


async def _cancel_paid(storage, table, order: dict, why: str, by: str, *, restock: bool, refund: bool) -> dict:
    if refund:
        state = refunds.totals(order)
        unresolved = any(e.get("status") == "requested" for e in refunds.refund_entries(order))
        if state.left > 0 or unresolved:
            order = await refunds.refund(storage, table, order.key, reason=why, by=by)
    if order.stock == StockState.HELD:
        # Paid, its units not yet marked sold (a settle still finishing): finish that first.
        await reservations.finish_commit(storage, order)
        order = await refunds.get_order(storage, order.key)
    state = refunds.totals(order)
    detail = why if refund else f"{why} (no refund: {state.left} of {state.captured} {state.currency} kept)"
    if refund and state.captured:
        detail += f"; refunded {state.refunded}" + (f", {state.pending} pending" if state.pending else "")
    detail += "; units " + ("back in stock" if restock else "written off")
    changes = {"status": OrderStatus.CANCELLED, "restock": restock}
    if order.stock == StockState.COMMITTED:
        changes["stock"] = StockState.RETURNING
    moved = await storage.orders.transition(order.key, {"status": OrderStatus.PROCESSING}, changes,
                                            history={"status": OrderStatus.CANCELLED, "reason": detail, "by": by},
                                            current=order)
    if moved is None:
        current = await refunds.get_order(storage, order.key)
        if current.status == OrderStatus.CANCELLED:
            return current  # another cancel won
        raise ActionError(409, f"order {order.key} changed meanwhile; try again")
    log.info("order %s: PROCESSING -> CANCELLED (%s)", moved.key, detail)
    if moved.stock == StockState.RETURNING:
        try:
            moved = await reservations.finish_take_back(storage, moved) or moved
        except Exception:
            log.exception("order %s: cancelled, but taking its units back failed; the reconciler will finish it",
                          moved.key)
    return moved


async def call_cancel_payment(method, order) -> PaymentCheck:
    """`provider_calls.cancel_payment`; ActionError 503 when the gateway cannot say (logged there)."""
    try:
        return await provider_calls.cancel_payment(method, order)
    except GatewayTrouble as exc:
        raise ActionError(503, f"the payment service is unavailable: {exc.reason}; the order is "
                               f"unchanged") from None
    except ProviderCallError:
        raise ActionError(503, f"payment method {method.id} failed; the order is unchanged") from None
