"""Integer id sequences from one atomic counters collection."""

from pymongo import ReturnDocument


class Counters:
    def __init__(self, collection):
        self.collection = collection

    async def next_value(self, name: str) -> int:
        """The next value of sequence `name`, starting at 1; unique under concurrency."""
        doc = await self.collection.find_one_and_update(
            {"_id": name},
            {"$inc": {"seq": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return doc["seq"]
