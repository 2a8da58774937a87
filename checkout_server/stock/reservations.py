"""The stock saga: reserve an order's units, give them back or keep them, exactly once.

MongoDB (and nx-27017) has no portable multi-document transaction, so a multi-line
reservation is a saga whose every step is a single guarded update (docs/architecture.md):

1. the order is inserted with `stock: "reserving"` (the intent);
2. `reserve_lines` takes every line in one bulk of guarded decrements, each also writing the
   marker `holds.<order_key>` on the product;
3. the order then moves to `stock: "held"` (with its payment); a final status later moves it
   on to `"committed"` (markers dropped, units sold, the ordered items out of the cart) or
   `"released"` (units given back).

Markers make each step exactly-once, so any step can be repeated; the customer's
`cleared.<order_key>` does the same for taking a paid order's items out of the cart.
`reconcile` finds what a crash (or a stalled process) left half-done and finishes or undoes
it; it runs at start-up and periodically.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from checkout_server import clock
from checkout_server.observability import metrics
from checkout_server.storage.models import Order, OrderStatus, StockState

log = logging.getLogger(__name__)

# An order still "reserving" this long after it was created belongs to a checkout that died
# (or stalled beyond any gateway timeout): the reconciler cancels it. Longer than
# checkout_lock.LOCK_SECONDS, which bounds a live checkout (its payment start is cut off well
# within the lock), so a live checkout is never taken for a dead one.
STALE_AFTER = timedelta(minutes=2)
RECONCILE_EVERY_SECONDS = 60.0
# The orphan-marker scan reads every product, so the periodic reconciler runs it at start-up
# and then only every this many passes (about hourly). Orphans need a checkout that stalled
# past STALE_AFTER and then died after its late reservation landed: rare, and harmless to
# invariant 1 meanwhile (units behind an orphan are counted by no order, only missing from
# `stock` for a while).
ORPHAN_SCAN_EVERY = 60

# Fault injection for tests: {point name: callable (sync or async)}. Empty in production.
# Points: "order_inserted" (before reserving), "stock_reserved" (before the payment starts),
# "payment_started" (before the order records it), "settled" (after a status transition,
# before its stock side effects), "markers_committed" (a paid order's markers dropped, not
# yet `committed`; in a checkout's batch (commits.py) its cart is already cleared, in a
# settlement not yet), "cart_cleared" (cart cleared, order not yet `committed`).
faults: dict[str, Callable] = {}


async def fault_point(name: str) -> None:
    hook = faults.get(name)
    if hook is not None:
        result = hook()
        if inspect.isawaitable(result):
            await result


async def reserve_lines(storage, order_key: str, lines: dict[int, int]) -> dict[int, int]:
    """Take every line for the order in one bulk; on a shortfall give back what was taken.

    Returns {} when every line held, else {product: units left} for each short line.
    """
    held = await storage.products.reserve(order_key, lines)
    if held == len(lines):
        return {}
    # One read tells which lines were taken (their marker) and how many units the others have.
    state = await storage.products.stock_and_hold(order_key, lines)
    taken = {p: q for p, (_stock, q) in state.items() if q is not None}
    await storage.products.release(order_key, taken)
    return {p: state.get(p, (0, None))[0] for p in lines if p not in taken}


async def cancel_order(storage, order: Order, expect: dict, reason: str, *, discard: bool = False) -> Order | None:
    """Move the order to CANCELLED (if it still matches `expect`) and give its units back.

    `order` is the order as the caller has it (its write needs no read when it is current).
    `discard` deletes the order afterwards: a checkout that never answered with it.
    Returns the cancelled order, or None if another writer got there first.
    """
    changes = {"status": OrderStatus.CANCELLED, "stock": StockState.HELD}
    if discard:
        changes["discard"] = True
    cancelled = await storage.orders.transition(
        order.key, expect, changes, history={"status": OrderStatus.CANCELLED, "reason": reason}, current=order)
    if cancelled is None:
        return None
    await fault_point("settled")
    await finish_release(storage, cancelled)
    return cancelled


async def finish_release(storage, order: Order) -> None:
    """Give back every unit a CANCELLED order still holds, then record that (idempotent)."""
    await storage.products.release(order.key, order.lines)
    if order.discard:
        await storage.orders.delete(order.key, {"status": OrderStatus.CANCELLED})
    else:
        await storage.orders.transition(order.key, {"status": OrderStatus.CANCELLED, "stock": StockState.HELD},
                                        {"stock": StockState.RELEASED}, current=order)


async def finish_commit(storage, order: Order, lock=None) -> Order | None:
    """A PROCESSING order's side effects, each exactly once: markers dropped, items out of the cart.

    Then the order is `committed`. `lock` (a checkout_lock.CheckoutLock still held) is released
    in the same customer update as the cart. Safe to repeat and to race (the reconciler
    finishes what a crash interrupted). Returns the committed order, or None if another
    writer committed it first.
    """
    lines = order.lines
    await storage.products.commit(order.key, lines)
    await fault_point("markers_committed")
    release = lock is not None and lock.held
    await storage.customers.remove_ordered_items(order.customer, lines, order.key, release_lock=release,
                                                 as_read=lock.customer if release else None,
                                                 held=lock.customer.get("checkout_lock") if release else None)
    if release:
        lock.held = False
    await fault_point("cart_cleared")
    return await storage.orders.transition(order.key, {"status": OrderStatus.PROCESSING, "stock": StockState.HELD},
                                           {"stock": StockState.COMMITTED}, current=order)


async def finish_take_back(storage, order: Order) -> Order | None:
    """A paid order cancelled by an admin (`stock: "returning"`): its units back, exactly once.

    Restocked, or written off when the order says `restock: false` (the units are gone);
    then the order is `returned` and the products' markers dropped. Safe to repeat and to
    race; the reconciler finishes what a crash interrupted.
    """
    lines = order.lines
    await storage.products.take_back(order.key, lines, restock=order.extra.get("restock", True) is not False)
    done = await storage.orders.transition(order.key, {"status": OrderStatus.CANCELLED, "stock": StockState.RETURNING},
                                           {"stock": StockState.RETURNED}, current=order)
    await storage.products.drop_return_markers(order.key, lines)
    return done


@dataclass
class ReconcileReport:
    interrupted: list[str] = field(default_factory=list)  # checkouts cancelled and discarded
    released: list[str] = field(default_factory=list)  # cancelled orders whose units went back
    taken_back: list[str] = field(default_factory=list)  # cancelled paid orders whose units came back
    committed: list[str] = field(default_factory=list)  # paid orders whose markers were dropped
    orphans: int = 0  # markers without a live order, given back

    def __bool__(self) -> bool:
        return bool(self.interrupted or self.released or self.committed or self.taken_back or self.orphans)


async def reconcile(storage, stale_after: timedelta | None = None, *, orphan_scan: bool = True) -> ReconcileReport:
    """Finish or undo whatever an interrupted checkout or settlement left half-done.

    Passes 1 and 2 cost one read each (plus the work found); `orphan_scan` adds a read of
    every product's markers (the periodic Reconciler runs it only now and then).
    """
    report = ReconcileReport()
    cutoff = clock.utcnow() - (STALE_AFTER if stale_after is None else stale_after)
    # 1. Checkouts that died between inserting the order and recording its payment.
    for order in await storage.orders.interrupted_checkouts(cutoff):
        if await cancel_order(storage, order, {"stock": StockState.RESERVING}, "checkout interrupted", discard=True):
            report.interrupted.append(order.key)
    # 2. Final orders whose units were not given back or committed yet (or, if paid, whose
    # items are not out of the cart yet). Every step is idempotent, so racing a settlement
    # that is finishing the same order is harmless.
    for order in await storage.orders.unfinished_settlements():
        if order.status == OrderStatus.PROCESSING:
            await finish_commit(storage, order)
            report.committed.append(order.key)
        else:
            await finish_release(storage, order)
            report.released.append(order.key)
    # 2b. Paid orders an admin cancelled whose units were not all taken back yet.
    for order in await storage.orders.unfinished_take_backs():
        await finish_take_back(storage, order)
        report.taken_back.append(order.key)
    # 3. Markers whose order is gone or already finished (a reserve that landed after its
    # checkout was given up on, by a process that then died).
    if orphan_scan:
        report.orphans = await _release_orphan_markers(storage)
    if report:
        log.warning("reconciled: %s", report)
        for action in ("interrupted", "released", "committed"):
            metrics.reconciler_acted(action, len(getattr(report, action)))
        metrics.reconciler_acted("orphans", report.orphans)
    return report


async def _release_orphan_markers(storage) -> int:
    holds: dict[str, dict[int, int]] = {}
    for product_id, markers in (await storage.products.all_holds()).items():
        for order_key, quantity in markers.items():
            holds.setdefault(order_key, {})[product_id] = quantity
    if not holds:
        return 0
    live = {order.key: order for order in await storage.orders.by_keys(holds)}
    fixed = 0
    for order_key, lines in holds.items():
        order = live.get(order_key)
        if order is not None and order.stock in (StockState.RESERVING, StockState.HELD):
            continue
        if order is not None and order.stock == StockState.COMMITTED:
            fixed += await storage.products.commit(order_key, lines)
        else:
            fixed += await storage.products.release(order_key, lines)
    return fixed


class Reconciler:
    """Runs `reconcile` at start-up and then every `interval` seconds until stopped."""

    def __init__(self, storage, interval: float = RECONCILE_EVERY_SECONDS,
                 orphan_scan_every: int = ORPHAN_SCAN_EVERY):
        self.storage = storage
        self.interval = interval
        self.orphan_scan_every = orphan_scan_every
        self.passes = 0
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self._run_once()
        self._task = asyncio.ensure_future(self._loop())

    async def _run_once(self) -> None:
        # The first pass (start-up, right after a possible crash) always scans for orphans.
        orphan_scan = self.passes % max(1, self.orphan_scan_every) == 0
        self.passes += 1
        try:
            await reconcile(self.storage, orphan_scan=orphan_scan)
        except Exception:
            log.exception("reconciliation failed; will retry")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._run_once()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
