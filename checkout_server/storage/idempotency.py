"""Idempotency keys: the first answer to a keyed request, replayed for repeats."""

from datetime import UTC, datetime, timedelta

from pymongo.errors import DuplicateKeyError


class IdempotencyKeys:
    def __init__(self, collection):
        self.collection = collection

    async def create_indexes(self) -> None:
        await self.collection.create_index("created_at")

    async def claim(self, key_id: str, request_hash: str) -> dict | None:
        """Claim a key for a new request: None if claimed now, else the existing record."""
        try:
            await self.collection.insert_one({
                "_id": key_id,
                "request_hash": request_hash,
                "state": "running",
                "created_at": datetime.now(UTC),
            })
            return None
        except DuplicateKeyError:
            return await self.collection.find_one({"_id": key_id})

    async def finish(self, key_id: str, status: int, body: dict) -> None:
        await self.collection.update_one(
            {"_id": key_id}, {"$set": {"state": "done", "status": status, "body": body}}
        )

    async def forget(self, key_id: str) -> None:
        """Drop a claim whose request ended without an answer worth replaying."""
        await self.collection.delete_one({"_id": key_id, "state": "running"})

    async def purge_older_than(self, age: timedelta) -> int:
        cutoff = datetime.now(UTC) - age
        result = await self.collection.delete_many({"created_at": {"$lt": cutoff}})
        return result.deleted_count
