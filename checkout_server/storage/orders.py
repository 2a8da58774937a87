"""Orders: one document per order, keyed by its order key.

`status` is the public lifecycle (HOLD, PROCESSING, CANCELLED). `stock` is the saga's own
state of the order's units: reserving -> held -> committed | released. Every change of
either is a single guarded update, so only one of several racing writers wins.
"""

from datetime import datetime, timezone

from pymongo import ReturnDocument


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Orders:
    def __init__(self, collection, counters):
        self.collection = collection
        self.counters = counters

    async def create_indexes(self) -> None:
        await self.collection.create_index([("customer", 1), ("created_at", -1)])
        await self.collection.create_index("status")
        await self.collection.create_index("stock")

    async def next_order_key(self, year: int) -> str:
        seq = await self.counters.next_value(f"orders-{year}")
        return f"ORD-{year}-{seq:06d}"

    async def insert(self, doc: dict) -> None:
        await self.collection.insert_one(doc)

    async def get(self, order_key: str) -> dict | None:
        return await self.collection.find_one({"_id": order_key})

    async def get_for_customer(self, order_key: str, customer_id: int) -> dict | None:
        return await self.collection.find_one(
            {"_id": order_key, "customer": customer_id, "stock": {"$ne": "reserving"}}
        )

    async def list_for_customer(self, customer_id: int, limit: int = 100, skip: int = 0) -> list[dict]:
        cursor = (
            self.collection.find({"customer": customer_id, "stock": {"$ne": "reserving"}})
            .sort("created_at", -1)
            .skip(skip)
            .limit(limit)
        )
        return await cursor.to_list(None)

    async def transition(self, order_key: str, expect: dict, changes: dict,
                         history: dict | None = None) -> dict | None:
        """Apply `changes` only if the order still matches `expect`; the new order or None."""
        update: dict = {"$set": {**changes, "updated_at": _now()}}
        if history is not None:
            update["$push"] = {"history": {"at": _now(), **history}}
        return await self.collection.find_one_and_update(
            {"_id": order_key, **expect}, update, return_document=ReturnDocument.AFTER
        )

    async def delete(self, order_key: str, expect: dict) -> bool:
        result = await self.collection.delete_one({"_id": order_key, **expect})
        return result.deleted_count == 1

    async def find(self, query: dict, limit: int = 500) -> list[dict]:
        """Orders matching a server-built query (never client input), oldest first."""
        return await self.collection.find(query).sort("created_at", 1).limit(limit).to_list(None)

    async def count(self, query: dict) -> int:
        return await self.collection.count_documents(query)
