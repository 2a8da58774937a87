"""Products and their stock, with reservation markers for the checkout saga.

A reservation is a guarded decrement that also writes `holds.<order_key>: quantity` on the
product, in the same single-document update. The marker makes every step idempotent and
lets a reconciler tell, after a crash, exactly which lines of an order were taken:
- reserve: `stock >= q` and no marker  -> stock -= q, set marker
- release: marker present              -> stock += marker's q, unset marker
- commit:  marker present              -> unset marker (the units stay sold)
`received` counts every unit ever put into stock (initial stock plus restocks), so
`received == stock + units held by HOLD and PROCESSING orders` can be checked at any time.

No query here filters on a boolean: nx-27017 stores a boolean written by `$set` as 0/1
(and then matches `true` against 1), so booleans are only ever read, and normalised.
"""

from collections.abc import Iterable

from pymongo import ReturnDocument

from checkout_server.storage.bulk import guarded_updates

PRODUCT_FIELDS = ("name", "price", "digital", "weight", "active")
BOOLEAN_FIELDS = ("digital", "active")


def _product(doc: dict | None) -> dict | None:
    """A product as read back: nx-27017 turns booleans written by `$set` into 0/1."""
    if doc is not None:
        for name in BOOLEAN_FIELDS:
            if name in doc:
                doc[name] = bool(doc[name])
    return doc


def _hold(order_key: str) -> str:
    return f"holds.{order_key}"


def _returned(order_key: str) -> str:
    return f"returned.{order_key}"


class Products:
    def __init__(self, collection, counters):
        self.collection = collection
        self.counters = counters

    async def create_indexes(self) -> None:
        pass  # every lookup is by _id

    async def create(self, fields: dict) -> dict:
        product_id = await self.counters.next_value("products")
        stock = int(fields.get("stock", 0))
        doc = {
            "_id": product_id,
            "name": fields["name"],
            "price": int(fields["price"]),
            "stock": stock,
            "received": stock,
            "digital": bool(fields.get("digital", False)),
            "weight": int(fields.get("weight", 0)),
            "active": bool(fields.get("active", True)),
            "holds": {},
        }
        await self.collection.insert_one(doc)
        return doc

    async def get(self, product_id: int) -> dict | None:
        return _product(await self.collection.find_one({"_id": product_id}))

    async def get_many(self, product_ids) -> dict[int, dict]:
        ids = [int(p) for p in product_ids]
        if not ids:
            return {}
        docs = await self.collection.find({"_id": {"$in": ids}}, {"holds": 0}).to_list(None)
        return {doc["_id"]: _product(doc) for doc in docs}

    async def for_sale(self, after: int, limit: int) -> list[dict]:
        """Up to `limit` active products with an id above `after`, by id, without `holds`.

        `active` is filtered here, not in the query (no query filters on a boolean), reading
        by `_id` ranges until the page is full or the products run out.
        """
        page: list[dict] = []
        while len(page) < limit:
            batch = await (self.collection.find({"_id": {"$gte": after + 1}}, {"holds": 0})
                           .sort("_id", 1).limit(limit).to_list(None))
            page.extend(p for p in map(_product, batch) if p.get("active", True))
            if len(batch) < limit:
                break
            after = batch[-1]["_id"]
        return page[:limit]

    async def find_by_name(self, name: str) -> dict | None:
        return _product(await self.collection.find_one({"name": name}))

    async def update(self, product_id: int, changes: dict) -> dict | None:
        changes = {k: v for k, v in changes.items() if k in PRODUCT_FIELDS}
        if not changes:
            return await self.get(product_id)
        return _product(await self.collection.find_one_and_update(
            {"_id": product_id}, {"$set": changes}, return_document=ReturnDocument.AFTER
        ))

    async def adjust_stock(self, product_id: int, delta: int, expect_stock: int | None = None) -> dict | None:
        """Restock (delta > 0) or write off (delta < 0) units; never below zero.

        With `expect_stock`, only if the stock is still exactly that (else None): lets an
        admin set an absolute count without losing a checkout's concurrent decrement.
        """
        guard: dict = {"_id": product_id}
        if expect_stock is not None:
            guard["stock"] = expect_stock
            if expect_stock + delta < 0:
                return None
        elif delta < 0:
            guard["stock"] = {"$gte": -delta}
        return _product(await self.collection.find_one_and_update(
            guard,
            {"$inc": {"stock": delta, "received": delta}},
            return_document=ReturnDocument.AFTER,
        ))

    async def reserve(self, order_key: str, lines: dict[int, int]) -> int:
        """Take `lines` {product: quantity} for an order; returns how many lines held."""
        return await guarded_updates(self.collection, [
            ({"_id": int(p), "stock": {"$gte": q}, _hold(order_key): {"$exists": False}},
             {"$inc": {"stock": -q}, "$set": {_hold(order_key): q}})
            for p, q in lines.items()
        ])

    async def release(self, order_key: str, lines: dict[int, int]) -> int:
        """Give back the units an order holds; lines it does not hold are left alone."""
        return await guarded_updates(self.collection, [
            ({"_id": int(p), _hold(order_key): q},
             {"$inc": {"stock": q}, "$unset": {_hold(order_key): ""}})
            for p, q in lines.items()
        ])

    async def commit(self, order_key: str, product_ids) -> int:
        """Drop an order's markers once its units are sold for good."""
        return await guarded_updates(self.collection, [
            ({"_id": int(p), _hold(order_key): {"$exists": True}}, {"$unset": {_hold(order_key): ""}})
            for p in product_ids
        ])

    async def commit_many(self, orders: dict[str, Iterable[int]]) -> int:
        """`commit` for many orders at once ({order key: product ids}): one update per product.

        Dropping a marker that is already gone changes nothing, so no guard is needed;
        returns how many products changed.
        """
        paths: dict[int, dict[str, str]] = {}
        for order_key, product_ids in orders.items():
            for p in product_ids:
                paths.setdefault(int(p), {})[_hold(order_key)] = ""
        return await guarded_updates(self.collection, [
            ({"_id": p}, {"$unset": unset})
            for p, unset in paths.items()
        ])

    async def take_back(self, order_key: str, lines: dict[int, int], restock: bool) -> int:
        """A cancelled paid order's units, once per product (marker `returned.<order_key>`).

        `restock`: back on the shelf (`stock` up); else written off (`received` down: the
        units are gone, say shipped and never returned). Either way the ledger holds.
        """
        field = "stock" if restock else "received"
        sign = 1 if restock else -1
        return await guarded_updates(self.collection, [
            ({"_id": int(p), _returned(order_key): {"$exists": False}},
             {"$inc": {field: sign * q}, "$set": {_returned(order_key): q}})
            for p, q in lines.items()
        ])

    async def drop_return_markers(self, order_key: str, product_ids) -> int:
        """Forget the `returned.<order_key>` markers once the order records its units taken back."""
        return await guarded_updates(self.collection, [
            ({"_id": int(p), _returned(order_key): {"$exists": True}}, {"$unset": {_returned(order_key): ""}})
            for p in product_ids
        ])

    async def held_by(self, order_key: str, product_ids) -> dict[int, int]:
        """{product: quantity} the order still holds a marker for."""
        ids = [int(p) for p in product_ids]
        if not ids:
            return {}
        docs = await self.collection.find(
            {"_id": {"$in": ids}, _hold(order_key): {"$exists": True}}, {"holds": 1}
        ).to_list(None)
        return {doc["_id"]: doc["holds"][order_key] for doc in docs}

    async def stock_and_hold(self, order_key: str, product_ids) -> dict[int, tuple[int, int | None]]:
        """{product: (stock, units the order holds or None)} in one read (a short reservation's look)."""
        ids = [int(p) for p in product_ids]
        if not ids:
            return {}
        docs = await self.collection.find({"_id": {"$in": ids}}, {"stock": 1, "holds": 1}).to_list(None)
        return {doc["_id"]: (int(doc.get("stock", 0)), (doc.get("holds") or {}).get(order_key)) for doc in docs}

    async def all_holds(self) -> dict[int, dict[str, int]]:
        """{product: {order key: quantity}} of every product holding units for some order.

        Reads only `_id` and `holds` of each product (nx-27017 cannot filter on a map
        being non-empty, so the filtering is done here).
        """
        docs = await self.collection.find({}, {"holds": 1}).to_list(None)
        return {doc["_id"]: dict(doc["holds"]) for doc in docs if doc.get("holds")}

    async def all(self) -> list[dict]:
        return [_product(doc) for doc in await self.collection.find({}).sort("_id", 1).to_list(None)]
