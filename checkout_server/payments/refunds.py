"""Refunds: through the order's payment provider, recorded by hand, or reported by the gateway.

Every refund is an entry of the order's `payment.refunds`:

    {id, amount, currency, status, reference, by, reason, manual, note, requested_at, updated_at,
     detail, lease_until}

`status` is "requested" (sent, or about to be, with no answer yet), "pending" (the gateway
accepted it and finishes it later), "succeeded" or "failed" (nothing refunded). The
invariant: the refunds not failed never add up to more than was captured
(`payment.captured`, else the order's total once it was paid). An entry is written
("requested") before the gateway is asked, in one guarded read/replace of the order that
checks that invariant, so two admins refunding at once cannot refund more than was paid.

`id` is the attempt's id, the gateway's idempotency key is built from it: a request that
timed out stays "requested" and is sent again, with the same id, by the next refund call
for the order (the gateway refunds it once); one decided meanwhile (a notification, a
check: `unanswered` marks it) answers the next request of its amount instead of refunding
again. While one request sends an attempt it holds the attempt's lease (`lease_until`);
another answers 409 meanwhile.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from checkout_server import clock
from checkout_server.payments import provider_calls
from checkout_server.payments.provider_calls import (
    GatewayTrouble,
    ProviderCallError,
    ProviderRefusal,
)
from checkout_server.payments.settlement import method_for, no_method_reason
from checkout_server.plugin.providers import (
    GatewayError,
    PaymentProvider,
    ProviderError,
    Refund,
    RefundNotSupported,
    RefundRequest,
    RefundState,
)
from checkout_server.storage.models import OrderStatus, StockState

log = logging.getLogger(__name__)

# How long one request may take to send an attempt before another may send it again. Longer
# than any provider's calls for a refund (a few calls of at most 15 s each).
LEASE = timedelta(seconds=90)
OPEN = ("requested", "pending", "succeeded")  # the statuses that count against what was captured
MAX_NOTE = 500


class ActionError(Exception):
    """An admin action refused or failed: an HTTP status and a message (+ `fields`)."""

    def __init__(self, status: int, message: str, fields: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.fields = status, message, fields


@dataclass(frozen=True)
class RefundTotals:
    captured: int
    currency: str
    refunded: int  # succeeded
    pending: int  # pending at the gateway, or requested with no answer yet
    left: int  # what may still be refunded

    def as_json(self) -> dict:
        return {"captured": self.captured, "refunded": self.refunded, "pending": self.pending,
                "refundable": self.left, "currency": self.currency}


def refund_entries(order: dict) -> list[dict]:
    return list((order.get("payment") or {}).get("refunds") or [])


def captured(order: dict) -> tuple[int, str]:
    """(amount, currency) the gateway took for the order; 0 if it took nothing we know of."""
    record = (order.get("payment") or {}).get("captured")
    if isinstance(record, dict) and isinstance(record.get("amount"), int):
        return record["amount"], record.get("currency") or order.get("currency", "")
    paid = order.get("status") == OrderStatus.PROCESSING or any(
        h.get("status") == OrderStatus.PROCESSING for h in order.get("history") or [])
    return (int(order.get("total", 0)) if paid else 0), order.get("currency", "")


def totals(order: dict) -> RefundTotals:
    amount, currency = captured(order)
    entries = refund_entries(order)
    refunded = sum(e["amount"] for e in entries if e.get("status") == "succeeded")
    pending = sum(e["amount"] for e in entries if e.get("status") in ("requested", "pending"))
    return RefundTotals(amount, currency, refunded, pending, amount - refunded - pending)


def can_refund(provider) -> bool:
    """Whether the provider implements `refund` (the base class's says it cannot)."""
    return type(provider).refund is not PaymentProvider.refund


def _now() -> datetime:
    return clock.utcnow()


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _flags(order: dict, entries: list[dict]) -> dict:
    """The order's refund flags once its refunds are `entries`: changes for `transition`."""
    payment = order.get("payment") or {}
    after = {**order, "payment": {**payment, "refunds": entries}}
    changes = {"payment.refunds": entries,
               "payment.refund_pending": any(e.get("status") in ("requested", "pending") for e in entries)}
    if payment.get("refund_needed") and totals(after).left <= 0:
        changes["payment.refund_needed"] = False  # resolved: everything taken is on its way back
    return changes


async def get_order(storage, order_key: str) -> dict:
    """The order an admin acts on; 404 if there is none, 409 while its checkout is still running."""
    order = await storage.orders.get(order_key)
    if order is None:
        raise ActionError(404, "order not found")
    if order.stock == StockState.RESERVING:
        raise ActionError(409, f"order {order_key} is still being checked out; try again in a moment")
    return order


def _method(table, order: dict):
    method = method_for(table, order)
    if method is None:
        raise ActionError(409, f"order {order.key}: {no_method_reason(table, order)}: nobody can ask its "
                               f"gateway; refund at the gateway and record it as a manual refund")
    return method


def _not_supported(method, order: dict, reason: str = "") -> ActionError:
    reason = reason or f"payment method {method.id} ({method.provider.name}) cannot refund through its gateway"
    return ActionError(400, f"{reason}: refund the customer another way and record it with "
                            f"POST /api/admin/orders/{order.key}/refund "
                            f'{{"manual": true, "note": "..."}}')


def _check_refundable(order: dict) -> None:
    if order.get("status") == OrderStatus.HOLD:
        raise ActionError(409, f"order {order['_id']} is not paid (HOLD): cancel it instead")  # also a change's dict


async def refund(storage, table, order_key: str, amount: int | None = None, *, manual: bool = False,
                 note: str = "", reason: str = "", by: str = "admin") -> dict:
    """Refund `amount` (default: all that is left) of an order's payment; the order as it is then.

    Through the order's payment provider, or with `manual` (the admin refunded another way,
    `note` says how) only recorded. Raises `ActionError`: 404 unknown order; 409 not paid,
    nothing left, a refund of the order being sent right now, or no method to ask; 400 an
    amount over what is left, a provider that cannot refund, a refund the gateway refused
    (recorded as failed); 503 the gateway could not be asked (nothing recorded as refunded:
    repeat the request, the gateway refunds it once).
    """
    order = await get_order(storage, order_key)
    _check_refundable(order)
    if manual:
        return await _record_manual(storage, order, amount, note, reason, by)
    method = _method(table, order)
    if not can_refund(method.provider):
        raise _not_supported(method, order)
    unresolved = [e for e in refund_entries(order) if e.get("status") == "requested"]
    if unresolved:
        # An earlier attempt got no answer (a timeout, a crash): send it again, same id, first.
        entry = unresolved[0]
        order, entry = await _send(storage, method, order, entry["id"], claim=True)
        if amount is None or amount == entry["amount"]:
            return _answer(order, entry)  # the repeat of that request: refunded once
    # An attempt the admin was answered 503 for, decided since (a notification, a check):
    # the repeat of that request answers it, once, rather than refunding again.
    late = [e for e in refund_entries(order) if e.get("unanswered") and e.get("status") != "requested"
            and (amount is None or amount == e["amount"])]
    if late:
        order = await _record(storage, order, late[0]["id"], unanswered=False)
        return _answer(order, late[0])
    left = totals(order).left
    if left <= 0:
        raise ActionError(409, f"order {order.key}: nothing left to refund")
    amount = left if amount is None else amount
    _check_amount(amount, left)
    attempt = secrets.token_hex(8)
    order = await _add_entry(storage, order, {
        "id": attempt, "amount": amount, "status": "requested", "reference": None, "manual": False,
        "by": by, "reason": reason, "lease_until": _now() + LEASE})
    order, entry = await _send(storage, method, order, attempt)
    return _answer(order, entry)


def _check_amount(amount: int, left: int) -> None:
    if amount > left:
        message = f"at most {left} is left to refund"
        raise ActionError(400, f"invalid request: amount: {message}", {"amount": [message[0].upper() + message[1:] + "."]})


def _answer(order: dict, entry: dict) -> dict:
    if entry.get("status") == "failed":
        raise ActionError(400, f"the gateway refused the refund: {entry.get('detail') or 'no reason given'}")
    return order


async def _record_manual(storage, order: dict, amount: int | None, note: str, reason: str, by: str) -> dict:
    if not note.strip():
        raise ActionError(400, "invalid request: note: say how the customer was refunded",
                          {"note": ["Required for a manual refund."]})
    left = totals(order).left
    if left <= 0:
        raise ActionError(409, f"order {order.key}: nothing left to refund")
    amount = left if amount is None else amount
    _check_amount(amount, left)
    order = await _add_entry(storage, order, {
        "id": secrets.token_hex(8), "amount": amount, "status": "succeeded", "reference": None,
        "manual": True, "note": note, "by": by, "reason": reason})
    log.info("order %s: manual refund of %s recorded by %s: %s", order.key, amount, by, note)
    return order


async def _add_entry(storage, order: dict, entry: dict) -> dict:
    """Append a refund, guarded: the order as it is now must have `entry["amount"]` left."""
    now = _now()

    def change(current: dict) -> dict:
        _check_refundable(current)
        state = totals(current)
        if entry["amount"] > state.left:  # someone refunded meanwhile
            if state.left <= 0:
                raise ActionError(409, f"order {current['_id']}: nothing left to refund")
            _check_amount(entry["amount"], state.left)
        added = {**entry, "currency": state.currency, "requested_at": now, "updated_at": now, "detail": ""}
        return _flags(current, [*refund_entries(current), added])

    return await storage.orders.transition(order.key, {}, change, current=order)


class _Finished(Exception):
    """The attempt was finished by somebody else meanwhile."""


async def _send(storage, method, order: dict, attempt_id: str, *, claim: bool = False) -> tuple[dict, dict]:
    """Send the "requested" refund `attempt_id` to the gateway and record its answer."""
    if claim:
        now = _now()

        def take_lease(current: dict) -> dict:
            entry = _entry(current, attempt_id)
            if entry is None or entry.get("status") != "requested":
                raise _Finished
            lease = _aware(entry.get("lease_until"))
            if lease is not None and lease > now:
                raise ActionError(409, f"a refund of {entry['amount']} for order {current['_id']} is being sent "
                                       f"to the gateway; try again in a minute")
            return _updated(current, attempt_id, lease_until=now + LEASE)

        try:
            order = await storage.orders.transition(order.key, {}, take_lease, current=order)
        except _Finished:
            current = await storage.orders.get(order.key)
            return current, _entry(current, attempt_id)
    entry = _entry(order, attempt_id)
    request = RefundRequest(amount=entry["amount"], currency=entry["currency"], attempt_id=attempt_id,
                            reason=entry.get("reason") or "")
    try:
        result = await call_refund(method, order, request)
    except RefundNotSupported as exc:
        await _record(storage, order, attempt_id, status="failed", detail=str(exc))
        raise _not_supported(method, order, str(exc)) from None
    except GatewayError as exc:
        # Maybe refunded, maybe not: the entry stays "requested" (not refunded), free to be sent again.
        await _record(storage, order, attempt_id, lease_until=None, unanswered=True)
        raise ActionError(503, f"the payment service is unavailable: {exc}; nothing is recorded as refunded: "
                               f"repeat the request to try again (the gateway refunds it once)") from None
    except ProviderError as exc:
        order = await _record(storage, order, attempt_id, status="failed", detail=str(exc), unanswered=False)
        return order, _entry(order, attempt_id)
    order = await _record(storage, order, attempt_id, status=result.state.value, reference=result.reference,
                          detail=result.detail, amount=result.amount, unanswered=False)
    log.info("order %s: refund %s of %s %s: %s (%s)", order.key, attempt_id, result.amount, result.currency,
             result.state.value, result.reference)
    return order, _entry(order, attempt_id)


def _entry(order: dict, attempt_id: str) -> dict | None:
    return next((e for e in refund_entries(order) if e.get("id") == attempt_id), None)


def _updated(order: dict, attempt_id: str, **fields) -> dict:
    entries = [{**e, **fields, "updated_at": _now()} if e.get("id") == attempt_id else e
               for e in refund_entries(order)]
    return _flags(order, entries)


async def _record(storage, order: dict, attempt_id: str, **fields) -> dict:
    """Write what became of an attempt; a failed refund of a cancelled order flags it refund_needed."""
    if fields.get("status") in ("succeeded", "pending", "failed"):
        fields["lease_until"] = None

    def change(current: dict) -> dict:
        reference = fields.get("reference")
        if reference and any(e.get("reference") == reference and e.get("id") != attempt_id
                             for e in refund_entries(current)):
            # The gateway's notification recorded this very refund first: one entry, ours.
            current = {**current, "payment": {**(current.get("payment") or {}), "refunds": [
                e for e in refund_entries(current) if e.get("reference") != reference or e.get("id") == attempt_id]}}
        changes = _updated(current, attempt_id, **fields)
        if fields.get("status") == "failed" and current.get("status") == OrderStatus.CANCELLED:
            after = {**current, "payment": {**(current.get("payment") or {}), "refunds": changes["payment.refunds"]}}
            if totals(after).left > 0:
                changes["payment.refund_needed"] = True
        return changes

    return await storage.orders.transition(order.key, {}, change, current=order)


# -- what the gateway reports: notifications and checks of pending refunds

class RefundNotYetRecorded(ActionError):
    """A gateway's refund we may be recording right now: the gateway should try again later."""


async def record_gateway_refunds(storage, order: dict, refunds: tuple[Refund, ...]) -> dict:
    """Record the refunds a gateway reports for the order (a notification), each once.

    Matched to the order's entries by the gateway's `reference` (else by our attempt id);
    an entry changes only if the gateway says something new, and a refund made at the
    gateway by hand is added (`by: "gateway"`). Raises `RefundNotYetRecorded` for an unknown
    refund while one of ours awaits the gateway's answer: it may be that one.
    """
    now = _now()

    def change(current: dict) -> dict:
        entries = refund_entries(current)
        changed = False
        for reported in refunds:
            if not isinstance(reported, Refund):
                continue
            index = next((i for i, e in enumerate(entries)
                          if (reported.reference and e.get("reference") == reported.reference)
                          or (reported.attempt_id and e.get("id") == reported.attempt_id)), None)
            if index is None:
                in_flight = [e for e in entries if e.get("status") == "requested"
                             and (_aware(e.get("lease_until")) or now) > now]
                if in_flight:
                    raise RefundNotYetRecorded(409, "a refund of this order is being recorded; deliver it again later")
                # An attempt of ours whose answer was lost (a timeout): this is most likely it.
                index = next((i for i, e in enumerate(entries) if e.get("status") == "requested"
                              and e.get("amount") == reported.amount), None)
            if index is None:
                entries.append({"id": secrets.token_hex(8), "amount": reported.amount,
                                "currency": reported.currency.upper(), "status": reported.state.value,
                                "reference": reported.reference, "manual": False, "by": "gateway",
                                "reason": "refunded at the gateway", "requested_at": now, "updated_at": now,
                                "detail": reported.detail, "lease_until": None})
                changed = True
                continue
            entry = entries[index]
            if entry.get("status") != reported.state.value or (reported.reference and not entry.get("reference")):
                entries[index] = {**entry, "status": reported.state.value, "updated_at": now, "lease_until": None,
                                  "reference": entry.get("reference") or reported.reference,
                                  "detail": reported.detail or entry.get("detail", "")}
                changed = True
        if not changed:
            raise _Finished
        return _flags(current, entries)

    try:
        updated = await storage.orders.transition(order.key, {}, change, current=order)
    except _Finished:
        return order
    log.info("order %s: refunds reported by the gateway recorded", order.key)
    return updated


async def finish_pending_refunds(storage, table) -> list[str]:
    """Ask the gateways about refunds they reported pending (`check_refund`); the orders changed."""
    changed = []
    for order in await storage.orders.with_pending_refunds():
        method = method_for(table, order)
        if method is None:
            continue
        reports = []
        for entry in refund_entries(order):
            if entry.get("status") != "pending" or not entry.get("reference"):
                continue
            known = Refund(RefundState.PENDING, entry["amount"], entry.get("currency", ""), entry["reference"],
                           attempt_id=entry["id"])
            try:
                reported = await call_check_refund(method, order, known)
            except ProviderError as exc:
                log.warning("order %s: could not ask about refund %s: %s", order.key, entry["reference"], exc)
                continue
            if reported.state is not RefundState.PENDING:
                reports.append(reported)
        if reports:
            try:
                await record_gateway_refunds(storage, order, tuple(reports))
            except RefundNotYetRecorded:
                continue
            changed.append(order.key)
    return changed


# -- the provider calls (through provider_calls: timeouts, answer checks, logs)

async def call_refund(method, order, request: RefundRequest) -> Refund:
    """`provider_calls.refund`: a `Refund`, the provider's own `ProviderError` (a refusal,
    `RefundNotSupported` too), or a `GatewayError` when the gateway could not say or the
    provider failed: the attempt may have reached the gateway, so it may be sent again."""
    try:
        result = await provider_calls.refund(method, order, request)
    except ProviderRefusal as exc:
        raise exc.cause from None
    except GatewayTrouble as exc:
        raise GatewayError(exc.reason) from None
    except ProviderCallError:
        raise GatewayError(f"payment method {method.id} failed") from None
    if result.state is not RefundState.FAILED and result.amount != request.amount:
        log.error("order %s: asked payment method %s to refund %s, the gateway reports %s", order.key,
                  method.id, request.amount, result.amount)
    return result


async def call_check_refund(method, order, refund_: Refund) -> Refund:
    """`provider_calls.check_refund`; any failure is a `ProviderError` (logged there)."""
    try:
        return await provider_calls.check_refund(method, order, refund_)
    except ProviderRefusal as exc:
        raise exc.cause from None
    except GatewayTrouble as exc:
        raise GatewayError(exc.reason) from None
    except ProviderCallError:
        raise GatewayError(f"payment method {method.id} failed") from None
