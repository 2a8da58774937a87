"""Hold expiry: HOLD orders past `hold_until` are settled or cancelled; old idempotency keys go.

Before cancelling, the gateway is asked once more (`provider.check`): a payment that did
complete is settled as paid instead. A gateway that cannot answer leaves the order for the
next sweep, so an outage never cancels a paid order.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .providers import GatewayError, PaymentCheck, PaymentState
from .settlement import order_info, settle

log = logging.getLogger("checkout_server.sweeper")

SWEEP_EVERY_SECONDS = 60.0
IDEMPOTENCY_TTL = timedelta(hours=24)


@dataclass
class SweepReport:
    paid: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # the gateway could not answer
    purged_keys: int = 0


async def sweep(storage, table, now: datetime | None = None) -> SweepReport:
    """One pass: expire overdue holds, purge idempotency keys older than 24 hours."""
    now = now or datetime.now(UTC)
    report = SweepReport()
    overdue = await storage.orders.find({"status": "HOLD", "stock": "held", "hold_until": {"$lt": now}})
    for order in overdue:
        await _expire(storage, table, order, report)
    report.purged_keys = await storage.idempotency.purge_older_than(IDEMPOTENCY_TTL)
    if report.paid or report.cancelled or report.deferred:
        log.info("hold expiry: %s", report)
    return report


async def _expire(storage, table, order: dict, report: SweepReport) -> None:
    method = table.payment.get(order["payment_method"]) if table is not None else None
    check = None
    if method is not None:
        try:
            check = await method.provider.check(order_info(order))
        except GatewayError as exc:  # an outage: try again next sweep
            log.warning("order %s: payment check failed, keeping it on hold for now: %s", order["_id"], exc)
            report.deferred.append(order["_id"])
            return
        except Exception:  # a plugin bug must not cancel a possibly paid order either
            log.exception("order %s: payment method %s failed to check the payment", order["_id"], method.id)
            report.deferred.append(order["_id"])
            return
    if check is None or check.state is PaymentState.PENDING:
        minutes = table.site.hold_minutes if table is not None else "the hold"
        check = PaymentCheck(PaymentState.FAILED, detail=f"payment not completed within {minutes} minutes")
    outcome = await settle(storage, table, order, check)
    if outcome.changed:
        (report.paid if outcome.result == "paid" else report.cancelled).append(order["_id"])


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
