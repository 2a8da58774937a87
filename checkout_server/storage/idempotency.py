"""Idempotency keys: the first answer to a keyed request, replayed for repeats.

A key is claimed ("running") before its request runs and finished ("done") with the answer.
A claim carries a lease (`lease_until`, epoch seconds): a process killed mid-request leaves
its claim running, and once the lease is over a retry with the same request takes it over
instead of being told "still running" until the key is purged. A checkout names its order
on its claim (`order_key`) as soon as the order exists: a retry whose answer was never
stored can then answer with that order instead of checking out again.
"""

from dataclasses import dataclass
from datetime import timedelta

from pymongo.errors import DuplicateKeyError

from checkout_server import clock

# The checkout passes checkout_lock.LOCK_SECONDS: no live request runs longer than its lock.
DEFAULT_LEASE_SECONDS = 90.0


@dataclass(frozen=True)
class Claim:
    """What `try_claim` got: `ours` (the request may run), and the record it met.

    `record`: when ours, the abandoned claim taken over (as it was read: its `order_key`
    names the order the dead request made, if any), or None for a new claim; when not
    ours, the existing record (done, live, or another request's).
    """

    ours: bool
    record: dict | None


class IdempotencyKeys:
    def __init__(self, collection):
        self.collection = collection

    async def create_indexes(self) -> None:
        await self.collection.create_index("created_at")
        await self.collection.create_index("customer")

    async def claim(self, key_id: str, request_hash: str,
                    lease_seconds: float = DEFAULT_LEASE_SECONDS, customer: int | None = None) -> dict | None:
        """Claim a key for a new request: None if claimed now, else the existing record.

        A running claim whose lease is over, for the same request, is taken over (None):
        its process died. Of racing takeovers exactly one wins; the others get the record.
        """
        claim = await self.try_claim(key_id, request_hash, lease_seconds, customer)
        return None if claim.ours else claim.record

    async def try_claim(self, key_id: str, request_hash: str,
                        lease_seconds: float = DEFAULT_LEASE_SECONDS, customer: int | None = None) -> Claim:
        """`claim`, telling a takeover apart: its record is the abandoned claim as it was.

        `customer`: whose key it is, for `count_for_customer`.
        """
        now = clock.timestamp()
        record = {
            "_id": key_id,
            "request_hash": request_hash,
            "state": "running",
            # A float, not a datetime: nx-27017 stores a `$set` datetime as a string, and
            # the takeover below writes `lease_until` with `$set`.
            "lease_until": now + lease_seconds,
            "created_at": clock.utcnow(),
        }
        if customer is not None:
            record["customer"] = customer
        try:
            await self.collection.insert_one(record)
            return Claim(True, None)
        except DuplicateKeyError:
            existing = await self.collection.find_one({"_id": key_id})
        if existing is None:  # purged meanwhile: as if new (a later finish writes nothing)
            return Claim(True, None)
        if not _abandoned(existing, request_hash, now):
            return Claim(False, existing)  # done, live, or another request's
        # Guarded on the lease we read: of racing takeovers exactly one matches.
        taken = await self.collection.update_one(
            {"_id": key_id, "state": "running", "lease_until": existing.get("lease_until")},
            {"$set": {"lease_until": now + lease_seconds}},
        )
        if taken.modified_count == 1:
            return Claim(True, existing)
        return Claim(False, await self.collection.find_one({"_id": key_id}))

    async def attach_order(self, key_id: str, order_key: str) -> None:
        """Name the order a running claim's request made (before it can answer with it)."""
        await self.collection.update_one({"_id": key_id, "state": "running"}, {"$set": {"order_key": order_key}})

    async def finish(self, key_id: str, status: int, body: dict) -> None:
        await self.collection.update_one(
            {"_id": key_id}, {"$set": {"state": "done", "status": status, "body": body}}
        )

    async def forget(self, key_id: str) -> None:
        """Drop a claim whose request ended without an answer worth replaying."""
        await self.collection.delete_one({"_id": key_id, "state": "running"})

    async def count_for_customer(self, customer: int, limit: int) -> int:
        """How many keys `customer` has stored (claimed with `customer`), counting at most `limit`."""
        return await self.collection.count_documents({"customer": customer}, limit=limit)

    async def purge_older_than(self, age: timedelta) -> int:
        cutoff = clock.utcnow() - age
        result = await self.collection.delete_many({"created_at": {"$lt": cutoff}})
        return result.deleted_count


def _abandoned(record: dict | None, request_hash: str, now: float) -> bool:
    """A running claim for this same request whose lease is over (a claim from before
    leases existed has none: its process is gone too)."""
    if record is None or record.get("state") != "running" or record.get("request_hash") != request_hash:
        return False
    lease = record.get("lease_until")
    return lease is None or lease < now
