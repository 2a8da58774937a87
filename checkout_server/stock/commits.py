"""Paid orders finished in batches: their markers dropped, then `committed`, off the checkout's path.

A direct checkout answers once its order is PROCESSING and its items are out of the cart.
What is left of the saga is the same for every paid order: drop the products' markers
(`holds.<order key>`), then move the order from `held` to `committed`. Done one order at a
time that is two round trips per checkout; queued here, it is two per batch: one bulk of
marker removals (one update per product, whatever the number of orders) and one update of
all the batch's orders.

Crash safety is the saga's own: an order is `committed` only after its markers are gone,
and a paid order still `held` (a batch that failed, or a process that died with orders
queued) is finished by the reconciler's second pass (`reservations.finish_commit`), which
is idempotent, so racing a batch is harmless. A batch starts FLUSH_DELAY seconds after the
first order is queued; while one runs, the next fills up.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

from checkout_server.stock.reservations import fault_point
from checkout_server.storage.models import Order

log = logging.getLogger(__name__)

# Long enough to gather the orders of a busy second, short enough that `committed` follows
# the answer closely (nothing waits for it: it only tidies the products' markers).
FLUSH_DELAY = 0.05

_queues: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _CommitQueue:
    def __init__(self, storage):
        self.storage = storage
        self.pending: dict[str, tuple[int, ...]] = {}  # order key -> its products
        self.running: asyncio.Task | None = None
        self.hurry = asyncio.Event()  # `flush` cuts the delay short

    def add(self, order: Order) -> None:
        self.pending[order.key] = tuple(order.lines)
        if self.running is None or self.running.done():
            self.hurry.clear()
            self.running = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            await asyncio.wait_for(self.hurry.wait(), FLUSH_DELAY)
        except TimeoutError:
            pass
        while self.pending:
            batch, self.pending = self.pending, {}
            await _commit(self.storage, batch)


async def _commit(storage, batch: dict[str, tuple[int, ...]]) -> None:
    try:
        await storage.products.commit_many(batch)
        await fault_point("markers_committed")
        await storage.orders.mark_committed(batch)
    except Exception:
        log.exception("finishing %d paid orders failed; the reconciler will finish them", len(batch))


async def finish_commit_soon(storage, order: Order, lock=None) -> None:
    """A checkout's paid order: its items out of the cart now, its markers and `committed` soon.

    The cart goes first, in one customer update that also releases `lock` (a
    checkout_lock.CheckoutLock still held); the rest is the same for every paid order and is
    done in batches (`commit_later`): two round trips fewer per checkout. Until then
    the order is PROCESSING and `held`, which the reconciler finishes if the batch never runs.
    """
    release = lock is not None and lock.held
    await storage.customers.remove_ordered_items(order.customer, order.lines, order.key, release_lock=release,
                                                 as_read=lock.customer if release else None,
                                                 held=lock.customer.get("checkout_lock") if release else None)
    if release:
        lock.held = False
    await fault_point("cart_cleared")
    commit_later(storage, order)


def commit_later(storage, order: Order) -> None:
    """Queue a PROCESSING order (its items out of the cart) to be finished in the next batch."""
    queue = _queues.get(storage)
    if queue is None:
        queue = _queues[storage] = _CommitQueue(storage)
    queue.add(order)


async def flush(storage) -> None:
    """Finish every order queued for `storage` now (shutdown, and tests that look at it)."""
    queue = _queues.get(storage)
    if queue is None:
        return
    queue.hurry.set()
    if queue.running is not None:
        await asyncio.shield(queue.running)  # a batch in flight is never cut in half
    while queue.pending:
        batch, queue.pending = queue.pending, {}
        await _commit(storage, batch)
