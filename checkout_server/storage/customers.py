"""Customers: profile, addresses, cart and checkout lock in one document.

One read by token hash gives the checkout everything it needs about the customer.
Addresses and the cart are maps keyed by the id as a string (`addresses.7`, `cart.12`),
so every change is a single-document `$set`/`$inc`/`$unset` on a map path.
"""

import time

from pymongo import ReturnDocument

from .bulk import guarded_updates

PROFILE_FIELDS = ("first_name", "last_name", "email", "phone")


class Customers:
    def __init__(self, collection, counters):
        self.collection = collection
        self.counters = counters

    async def create_indexes(self) -> None:
        await self.collection.create_index("token_hash", unique=True)
        await self.collection.create_index("email")

    async def create(self, token_hash: str, profile: dict) -> dict:
        customer_id = await self.counters.next_value("customers")
        doc = {
            "_id": customer_id,
            "token_hash": token_hash,
            **{field: profile.get(field) for field in PROFILE_FIELDS},
            "addresses": {},
            "cart": {},
            "checkout_lock": 0.0,
        }
        await self.collection.insert_one(doc)
        return doc

    async def by_token_hash(self, token_hash: str) -> dict | None:
        return await self.collection.find_one({"token_hash": token_hash})

    async def get(self, customer_id: int) -> dict | None:
        return await self.collection.find_one({"_id": customer_id})

    async def find_by_email(self, email: str) -> dict | None:
        return await self.collection.find_one({"email": email})

    async def set_token_hash(self, customer_id: int, token_hash: str) -> bool:
        """Replace the customer's token (the old one stops working at once)."""
        result = await self.collection.update_one({"_id": customer_id}, {"$set": {"token_hash": token_hash}})
        return result.matched_count == 1

    async def update_profile(self, customer_id: int, changes: dict) -> dict | None:
        changes = {k: v for k, v in changes.items() if k in PROFILE_FIELDS}
        if not changes:
            return await self.get(customer_id)
        return await self.collection.find_one_and_update(
            {"_id": customer_id}, {"$set": changes}, return_document=ReturnDocument.AFTER
        )

    async def add_address(self, customer_id: int, address: dict) -> dict:
        address_id = await self.counters.next_value("addresses")
        stored = {"id": address_id, **address}
        await self.collection.update_one(
            {"_id": customer_id}, {"$set": {f"addresses.{address_id}": stored}}
        )
        return stored

    async def delete_address(self, customer_id: int, address_id: int) -> bool:
        path = f"addresses.{int(address_id)}"
        result = await self.collection.update_one(
            {"_id": customer_id, path: {"$exists": True}}, {"$unset": {path: ""}}
        )
        return result.modified_count == 1

    # -- cart: {"<product id>": quantity}
    async def add_to_cart(self, customer_id: int, product_id: int, quantity: int,
                          max_quantity: int | None = None) -> dict | None:
        """Add to a line; with `max_quantity`, only if the line stays within it (else None)."""
        path = f"cart.{int(product_id)}"
        guard: dict = {"_id": customer_id}
        if max_quantity is not None:
            guard["$or"] = [{path: {"$exists": False}}, {path: {"$lte": max_quantity - quantity}}]
        return await self.collection.find_one_and_update(
            guard, {"$inc": {path: quantity}}, return_document=ReturnDocument.AFTER
        )

    async def set_cart_quantity(self, customer_id: int, product_id: int, quantity: int) -> dict | None:
        path = f"cart.{int(product_id)}"
        update = {"$set": {path: quantity}} if quantity > 0 else {"$unset": {path: ""}}
        return await self.collection.find_one_and_update(
            {"_id": customer_id}, update, return_document=ReturnDocument.AFTER
        )

    async def remove_ordered_items(self, customer_id: int, quantities: dict[int, int]) -> None:
        """Take ordered quantities out of the cart; lines added since stay."""
        if not quantities:
            return
        doc = await self.collection.find_one_and_update(
            {"_id": customer_id},
            {"$inc": {f"cart.{int(p)}": -q for p, q in quantities.items()}},
            projection={"cart": 1},
            return_document=ReturnDocument.AFTER,
        )
        emptied = [p for p, q in ((doc or {}).get("cart") or {}).items() if q <= 0]
        # A line that reached zero (or less, if the shopper lowered it meanwhile) goes;
        # the guard keeps a line the shopper refilled in the meantime. One bulk for all.
        await guarded_updates(self.collection, [
            ({"_id": customer_id, f"cart.{key}": {"$lte": 0}}, {"$unset": {f"cart.{key}": ""}})
            for key in emptied
        ])

    # -- checkout lock: one checkout per customer at a time
    async def acquire_checkout_lock(self, customer_id: int, seconds: float) -> dict | None:
        """Take the lock: the customer as it is now (the checkout's one read), else None."""
        now = time.time()
        return await self.collection.find_one_and_update(
            {"_id": customer_id, "checkout_lock": {"$lt": now}},
            {"$set": {"checkout_lock": now + seconds}},
            return_document=ReturnDocument.AFTER,
        )

    async def release_checkout_lock(self, customer_id: int, last_checkout: dict | None = None) -> None:
        update = {"checkout_lock": 0.0}
        if last_checkout is not None:
            update["last_checkout"] = last_checkout
        await self.collection.update_one({"_id": customer_id}, {"$set": update})
