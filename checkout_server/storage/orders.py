"""Orders: one document per order, keyed by its order key, handed out as `models.Order`.

`status` is the public lifecycle (`OrderStatus`: HOLD, PROCESSING, CANCELLED). `stock` is
the saga's own state of the order's units (`StockState`: reserving -> held -> committed |
released). Every change of either is a single guarded update, so only one of several racing
writers wins. The queries the sweeper and the reconciler need are named methods here: no
code outside storage builds a filter.
"""

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Iterable
from datetime import datetime

from checkout_server import clock
from checkout_server.storage.models import LIVE_STATUSES, Order, OrderStatus, StockState

log = logging.getLogger(__name__)

# Order numbers are taken from the counter this many at a time, the next block while the
# current one still has a quarter left: no checkout waits on the counter, one round trip
# serves fifty. Keys stay unique and rise within a process; numbers a process had not used
# when it stopped are skipped, and two processes hand out from two blocks at once.
ORDER_KEY_BLOCK = 50


class Orders:
    def __init__(self, collection, counters):
        self.collection = collection
        self.counters = counters
        self._free_keys: dict[int, deque[int]] = {}  # year -> order numbers taken, not handed out
        self._refills: dict[int, asyncio.Future] = {}  # year -> the block being taken

    async def create_indexes(self) -> None:
        await self.collection.create_index([("customer", 1), ("created_at", -1)])
        await self.collection.create_index("status")
        await self.collection.create_index("stock")

    async def next_order_key(self, year: int) -> str:
        """A new order key `ORD-<year>-<number>`: unique, numbers rising (see ORDER_KEY_BLOCK)."""
        free = self._free_keys.setdefault(year, deque())
        while not free:
            await asyncio.shield(self._refill(year))
        seq = free.popleft()
        if len(free) < ORDER_KEY_BLOCK // 4:
            self._refill(year)  # in the background: the next checkouts need not wait for it
        return f"ORD-{year}-{seq:06d}"

    async def prepare_order_keys(self, year: int) -> None:
        """Take a block of order numbers now (at start-up), so the first checkout need not."""
        if not self._free_keys.get(year):
            await asyncio.shield(self._refill(year))

    def _refill(self, year: int) -> asyncio.Future:
        """The block being taken for `year`, started if none is."""
        running = self._refills.get(year)
        if running is None or running.done():
            running = self._refills[year] = asyncio.ensure_future(self._take_block(year))
            running.add_done_callback(_log_failed_refill)
        return running

    async def _take_block(self, year: int) -> None:
        block = await self.counters.next_block(f"orders-{year}", ORDER_KEY_BLOCK)
        self._free_keys.setdefault(year, deque()).extend(block)

    async def close(self) -> None:
        """Wait for a block still being taken (a task must not outlive its loop)."""
        running = [task for task in self._refills.values() if not task.done()]
        await asyncio.gather(*running, return_exceptions=True)

    async def mark_committed(self, order_keys: Iterable[str]) -> int:
        """Paid orders whose markers are gone: `held` -> `committed`, many in one update.

        Guarded like `transition` (PROCESSING and `held`, so an order an admin cancelled
        meanwhile is left alone) and bumps `rev`, so a `transition` working from an older copy
        reads again. A plain `$set` of a string, which nx-27017 stores as it is; `updated_at`
        is left as it was (a datetime written by `$set` would come back a string there).
        """
        keys = list(order_keys)
        if not keys:
            return 0
        result = await self.collection.update_many(
            {"_id": {"$in": keys}, "status": str(OrderStatus.PROCESSING), "stock": str(StockState.HELD)},
            {"$set": {"stock": str(StockState.COMMITTED)}, "$inc": {"rev": 1}})
        return result.modified_count

    async def insert(self, order: Order | dict) -> Order:
        """Insert a new order and return it as stored (pass it to `transition(current=...)`).

        `rev` (the revision `transition` guards on) starts at 0. `events` starts as an
        empty list: nx-27017 ignores `$addToSet` on a missing field.
        """
        doc = order.to_document() if isinstance(order, Order) else order
        stored = _as_stored({"rev": 0, "events": [], **doc})
        # The driver gets its own copy (_as_stored rebuilds every dict and list).
        await self.collection.insert_one(_as_stored(stored))
        return Order.from_document(stored)

    async def get(self, order_key: str) -> Order | None:
        return _order(await self.collection.find_one({"_id": order_key}))

    async def get_for_customer(self, order_key: str, customer_id: int) -> Order | None:
        return _order(await self.collection.find_one(
            {"_id": order_key, "customer": customer_id, "stock": {"$ne": str(StockState.RESERVING)}}
        ))

    async def list_for_customer(self, customer_id: int, limit: int = 100, skip: int = 0) -> list[Order]:
        """A page of the customer's orders, newest first (`skip` orders on, at most `limit`).

        Orders created in the same millisecond are ordered by key, so pages never overlap.
        """
        cursor = (
            self.collection.find({"customer": customer_id, "stock": {"$ne": str(StockState.RESERVING)}})
            .sort([("created_at", -1), ("_id", -1)])
            .skip(skip)
            .limit(limit)
        )
        return [Order.from_document(doc) for doc in await cursor.to_list(None)]

    async def list_for_admin(self, *, status: str | None = None, customer: int | None = None,
                             refund_needed: bool | None = None, limit: int = 50, skip: int = 0) -> list[Order]:
        """A page of all orders, newest first (ties by key), optionally filtered.

        `refund_needed`: True for orders flagged `payment.refund_needed`, False for the others
        (the flag absent or false). Orders still being checked out ("reserving") are left out.
        """
        clauses: list[dict] = [{"stock": {"$ne": str(StockState.RESERVING)}}]
        if status is not None:
            clauses.append({"status": str(status)})
        if customer is not None:
            clauses.append({"customer": customer})
        if refund_needed is True:
            clauses.append({"payment.refund_needed": True})
        elif refund_needed is False:
            clauses.append({"payment.refund_needed": {"$ne": True}})
        cursor = (
            self.collection.find({"$and": clauses})
            .sort([("created_at", -1), ("_id", -1)])
            .skip(skip)
            .limit(limit)
        )
        return [Order.from_document(doc) for doc in await cursor.to_list(None)]

    async def with_pending_refunds(self, limit: int = 500) -> list[Order]:
        """Orders with a refund the gateway has not finished (`payment.refund_pending`), oldest first."""
        return await self.find({"payment.refund_pending": True}, limit=limit)

    async def awaiting_payment(self, customer_id: int, limit: int) -> list[dict]:
        """Up to `limit` of the customer's orders on HOLD, each only its `_id` and `items`
        (what it holds): for the checkout's limits per customer."""
        cursor = self.collection.find({"customer": customer_id, "status": str(OrderStatus.HOLD)}, {"items": 1}).limit(limit)
        return await cursor.to_list(None)

    async def transition(self, order_key: str, expect: dict, changes,
                         history: dict | None = None, *, current: Order | dict | None = None) -> Order | None:
        """Apply `changes` only if the order still matches `expect`; the new order or None.

        `changes` may use dotted paths ("payment.reference"); it may also be a function of the
        order as it is now returning such a dict, for a change that depends on the order (a
        list grown by one): it is called again on every retry. The order is read, changed
        in memory, and written back whole, guarded by `expect` and its revision `rev`:
        nx-27017 stores a datetime or boolean written by `$set` as a string or 0/1, and a
        subdocument written by `$push` as a JSON string, while a whole document keeps
        every type. Of racing writers with the same `expect`, exactly one wins; a writer
        that lost only to an unrelated change (another field) reads again and retries.

        `current`: the order as the caller last had it (as `insert`, `get` or `transition`
        returned it). The first attempt writes from it without reading: one round trip
        when nobody changed the order since; its `rev` guard catches anybody who did.
        `expect` names top-level fields and the values they must have (enums welcome).
        """
        expect = _as_stored(expect)
        if isinstance(current, Order):
            current = current.to_document()
        for _attempt in range(50):
            if current is None or not _matches(current, expect):
                current = await self.collection.find_one({"_id": order_key, **expect})
                if current is None:
                    return None
            now = clock.utcnow()
            # _as_stored rebuilds every dict and list: a copy the caller's `current` and
            # the changes' own values never share (no deepcopy needed on top).
            updated = _as_stored(current)
            earlier = updated.get("history", [])  # the order's own, whatever `changes` holds
            wanted = changes(_as_stored(current)) if callable(changes) else changes
            for path, value in {**wanted, "updated_at": now}.items():
                _set_path(updated, path, _as_stored(value))
            if history is not None:
                updated["history"] = [*earlier, _as_stored({"at": now, **history})]
            updated["rev"] = current.get("rev", 0) + 1
            result = await self.collection.replace_one(
                {"_id": order_key, **expect, "rev": current.get("rev", 0)}, updated)
            if result.matched_count == 1:
                return Order.from_document(updated)
            current = None  # changed since: read it again
        raise RuntimeError(f"order {order_key}: too many concurrent changes")

    async def add_event(self, order_key: str, event_id: str) -> None:
        """Remember a gateway notification's event id on the order (de-duplication).

        Bumps `rev` in the same update, so a concurrent `transition` (which writes the
        whole order) retries from a fresh read instead of dropping the event.
        """
        event = str(event_id)
        result = await self.collection.update_one(
            {"_id": order_key, "events": {"$exists": True}},
            {"$addToSet": {"events": event}, "$inc": {"rev": 1}})
        if not result.matched_count:
            # nx-27017 ignores $addToSet on a missing field: start the list where there is none.
            await self.collection.update_one({"_id": order_key, "events": {"$exists": False}},
                                             {"$set": {"events": [event]}, "$inc": {"rev": 1}})

    async def delete(self, order_key: str, expect: dict) -> bool:
        result = await self.collection.delete_one({"_id": order_key, **_as_stored(expect)})
        return result.deleted_count == 1

    # -- the queries of the sweeper, the reconciler and the stock check (oldest first)

    async def overdue_holds(self, now: datetime, limit: int = 500) -> list[Order]:
        """HOLD orders, their payment recorded, whose hold ended before `now` (the sweeper's)."""
        return await self.find({"status": str(OrderStatus.HOLD), "stock": str(StockState.HELD),
                                "hold_until": {"$lt": now}}, limit)

    async def interrupted_checkouts(self, created_before: datetime, limit: int = 500) -> list[Order]:
        """Orders still `reserving` that were created at or before `created_before`."""
        return await self.find({"stock": str(StockState.RESERVING), "created_at": {"$lte": created_before}}, limit)

    async def unfinished_settlements(self, limit: int = 500) -> list[Order]:
        """PROCESSING or CANCELLED orders whose units are neither committed nor released yet."""
        return await self.find({"stock": str(StockState.HELD),
                                "status": {"$in": [str(OrderStatus.PROCESSING), str(OrderStatus.CANCELLED)]}},
                               limit)

    async def unfinished_take_backs(self, limit: int = 500) -> list[Order]:
        """Paid orders an admin cancelled whose units are not all taken back yet (`returning`)."""
        return await self.find({"stock": str(StockState.RETURNING), "status": str(OrderStatus.CANCELLED)}, limit)

    async def by_keys(self, order_keys: Iterable[str]) -> list[Order]:
        """The orders of these keys that exist."""
        keys = list(order_keys)
        return await self.find({"_id": {"$in": keys}}, limit=len(keys)) if keys else []

    async def holding_units(self, customer_id: int | None = None, limit: int = 1_000_000) -> list[Order]:
        """The orders whose units are held or sold: HOLD and PROCESSING (the stock invariant's),
        every customer's or one's."""
        query: dict = {"status": {"$in": [str(s) for s in LIVE_STATUSES]}}
        if customer_id is not None:
            query["customer"] = customer_id
        return await self.find(query, limit)

    async def find(self, query: dict, limit: int = 500) -> list[Order]:
        """Orders matching a query built here or by a test (never client input), oldest first."""
        docs = await self.collection.find(_as_stored(query)).sort("created_at", 1).limit(limit).to_list(None)
        return [Order.from_document(doc) for doc in docs]

    async def count(self, query: dict) -> int:
        return await self.collection.count_documents(_as_stored(query))


def _order(doc: dict | None) -> Order | None:
    return None if doc is None else Order.from_document(doc)


def _as_stored(value):
    """`value` with datetimes cut to milliseconds, as BSON stores them, and enums as their
    values (a copy for the caller)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    if isinstance(value, dict):
        return {key: _as_stored(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_stored(item) for item in value]
    return value


def _matches(doc: dict, expect: dict) -> bool:
    """Whether `doc` (in memory) satisfies an `expect` guard of plain top-level values."""
    return all(not isinstance(value, dict) and doc.get(name) == value for name, value in expect.items())


def _set_path(doc: dict, path: str, value) -> None:
    """`$set` semantics for one dotted path, on a document in memory."""
    *parents, leaf = path.split(".")
    for name in parents:
        child = doc.get(name)
        if not isinstance(child, dict):
            child = doc[name] = {}
        doc = child
    doc[leaf] = value


def _log_failed_refill(task: asyncio.Future) -> None:
    # A checkout awaiting the block gets the error itself; a background refill's is logged
    # here (and retried by the next checkout).
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not take a block of order numbers: %s", task.exception())
