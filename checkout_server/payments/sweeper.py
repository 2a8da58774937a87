"""Hold expiry: HOLD orders past `hold_until` are settled or cancelled; old idempotency keys go;
refunds a gateway reported pending are asked about again (`refunds.finish_pending_refunds`).

Before cancelling, the gateway is asked once more (`provider.check`): a payment that did
complete is settled as paid instead, one that never will (FAILED) is cancelled. Anything
undecided keeps the hold and is asked again on the next sweep, so nothing that may still be
paid is ever cancelled:
- a gateway that cannot answer (`GatewayError`, or a plugin bug);
- PENDING from a provider that implements `check` (a payment still in flight: an
  asynchronous debit, a capture PayPal holds for review);
- an order whose payment method is no longer configured (removed by a reload, or its id
  given to another provider: `settlement.method_for`): nobody can be asked, so it waits,
  logged as an ERROR each sweep, until the method is configured again.
Only a provider that does not override `PaymentProvider.check` (whose PENDING means "cannot
ask") has its expired holds cancelled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from checkout_server import clock
from checkout_server.observability import metrics
from checkout_server.payments import refunds
from checkout_server.payments.settlement import (
    PAID,
    ask_gateway,
    method_for,
    no_method_reason,
    settle,
)
from checkout_server.plugin.providers import PaymentCheck, PaymentProvider, PaymentState
from checkout_server.storage.models import Order

log = logging.getLogger(__name__)

SWEEP_EVERY_SECONDS = 60.0
IDEMPOTENCY_TTL = timedelta(hours=24)


@dataclass
class SweepReport:
    paid: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # not decided: asked again next sweep
    purged_keys: int = 0
    refunds_finished: list[str] = field(default_factory=list)  # orders whose pending refunds the gateway decided


async def sweep(storage, table, now: datetime | None = None) -> SweepReport:
    """One pass: expire overdue holds, purge idempotency keys older than 24 hours."""
    now = now or clock.utcnow()
    report = SweepReport()
    overdue = await storage.orders.overdue_holds(now)
    for order in overdue:
        await _expire(storage, table, order, report)
    report.purged_keys = await storage.idempotency.purge_older_than(IDEMPOTENCY_TTL)
    report.refunds_finished = await refunds.finish_pending_refunds(storage, table)
    for outcome in ("paid", "cancelled", "deferred"):
        metrics.hold_expired(outcome, len(getattr(report, outcome)))
    if report.paid or report.cancelled or report.deferred or report.refunds_finished:
        log.info("hold expiry: %s", report)
    return report


def can_check(provider) -> bool:
    """Whether the provider implements `check` (the base class's PENDING means "cannot ask")."""
    return type(provider).check is not PaymentProvider.check


async def _expire(storage, table, order: Order, report: SweepReport) -> None:
    method = method_for(table, order)
    if method is None:
        # Removed from the config, or its id given to another provider (a reload): the
        # payment may well be complete at its gateway, and nobody can ask. Never cancel blind.
        log.error("order %s: %s; its expired hold is kept until the method is configured again",
                  order.key, no_method_reason(table, order))
        report.deferred.append(order.key)
        return
    check = await ask_gateway(method, order)
    if check is None:  # an outage or a provider failure (logged): try again next sweep
        report.deferred.append(order.key)
        return
    expired = f"payment not completed within {table.site.hold_minutes} minutes"
    if check.state is PaymentState.FAILED and not check.detail:
        check = dataclasses.replace(check, detail=expired)
    if check.state is PaymentState.PENDING:
        if can_check(method.provider):
            # The gateway says the payment is still in flight: cancelling now would let money
            # arrive for a cancelled order. Keep the hold and ask again next sweep.
            log.warning("order %s: hold expired but payment method %s reports the payment still "
                        "pending (%s); keeping it on hold", order.key, method.id, check.detail or "no detail")
            report.deferred.append(order.key)
            return
        check = PaymentCheck(PaymentState.FAILED, detail=expired)
    outcome = await settle(storage, table, order, check, by="hold expiry")
    if outcome.changed:
        (report.paid if outcome.result == PAID else report.cancelled).append(order.key)


class Sweeper:
    """Runs `sweep` every `interval` seconds against the current method table."""

    def __init__(self, storage, method_registry, interval: float = SWEEP_EVERY_SECONDS):
        self.storage = storage
        self.method_registry = method_registry
        self.interval = interval
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await sweep(self.storage, self.method_registry.table)
            except Exception:
                log.exception("hold expiry sweep failed; will retry")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
