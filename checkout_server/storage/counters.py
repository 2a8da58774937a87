"""Integer id sequences from one atomic counters collection."""

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError


class Counters:
    def __init__(self, collection):
        self.collection = collection

    async def next_value(self, name: str) -> int:
        """The next value of sequence `name`, starting at 1; unique under concurrency."""
        return (await self.next_block(name, 1))[0]

    async def next_block(self, name: str, size: int) -> range:
        """The next `size` values of sequence `name` in one update; unique under concurrency."""
        for attempt in range(2):
            try:
                doc = await self.collection.find_one_and_update(
                    {"_id": name},
                    {"$inc": {"seq": size}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
                return range(doc["seq"] - size + 1, doc["seq"] + 1)
            except DuplicateKeyError:
                # Two first-ever upserts raced; the loser's retry finds the counter.
                if attempt:
                    raise
        raise AssertionError("unreachable")
