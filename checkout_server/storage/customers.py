"""Customers: profile, addresses, cart and checkout lock in one document.

One read by token hash gives the checkout everything it needs about the customer; the
checkout's read is also the update that takes its lock (`acquire_checkout_lock_by_token`).
Addresses and the cart are maps keyed by the id as a string (`addresses.7`, `cart.12`),
so every change is a single-document `$set`/`$inc`/`$unset` on a map path.

`cleared: {"<order key>": epoch}` records the paid orders whose items already left the
cart, written in the same update as the removal and guarded by its absence: that makes the
removal exactly-once even when a crash makes the reconciler repeat it. Entries older than
CLEARED_KEEP_SECONDS are pruned by the customer's next checkout, in a write it does anyway.
"""

from pymongo import ReturnDocument

from checkout_server import clock

PROFILE_FIELDS = ("first_name", "last_name", "email", "phone")
ADDRESS_FIELDS = ("id", "line1", "line2", "city", "postal_code", "country")
# How long a `cleared.<order key>` entry is kept. Only a settlement still finishing the
# order (or the reconciler finishing it for a crashed one) repeats the removal, within
# minutes; a week leaves room for any stall.
CLEARED_KEEP_SECONDS = 7 * 24 * 3600.0
# A cart clean-up whose ordered lines the shopper keeps changing gives up after this many
# read-and-write rounds (raising: the reconciler repeats it later).
CART_WRITE_ATTEMPTS = 20


def _email_key(email: str | None) -> str | None:
    """What emails are compared by: the address lowercased."""
    return email.lower() if isinstance(email, str) else None


def _cart_path(product_id) -> str:
    return f"cart.{int(product_id)}"


def _stale_cleared(as_read: dict | None, now: float) -> dict[str, str]:
    """`$unset` entries for the `cleared` records in `as_read` that are old enough to go."""
    cleared = (as_read or {}).get("cleared") or {}
    return {f"cleared.{key}": "" for key, at in cleared.items()
            if isinstance(at, (int, float)) and at < now - CLEARED_KEEP_SECONDS}


def _lock_guard(held: float | None) -> dict:
    """The filter that the checkout lock is still the one we set (none without `held`)."""
    return {} if held is None else {"checkout_lock": held}


def _update(set_: dict | None = None, unset: dict | None = None, inc: dict | None = None) -> dict:
    """An update document without empty operators (MongoDB before 5.0 refuses those)."""
    ops = {"$set": set_, "$unset": unset, "$inc": inc}
    return {op: fields for op, fields in ops.items() if fields}


class Customers:
    def __init__(self, collection, counters):
        self.collection = collection
        self.counters = counters

    async def create_indexes(self) -> None:
        await self.collection.create_index("token_hash", unique=True)
        await self.collection.create_index("email")
        await self.collection.create_index("email_key")

    async def create(self, token_hash: str, profile: dict) -> dict:
        customer_id = await self.counters.next_value("customers")
        doc = {
            "_id": customer_id,
            "token_hash": token_hash,
            **{field: profile.get(field) for field in PROFILE_FIELDS},
            "email_key": _email_key(profile.get("email")),
            "addresses": {},
            "cart": {},
            "checkout_lock": 0.0,
            "cleared": {},
        }
        await self.collection.insert_one(doc)
        return doc

    async def by_token_hash(self, token_hash: str) -> dict | None:
        return await self.collection.find_one({"token_hash": token_hash})

    async def get(self, customer_id: int) -> dict | None:
        return await self.collection.find_one({"_id": customer_id})

    async def find_by_email(self, email: str) -> dict | None:
        return await self.collection.find_one({"email": email})

    async def email_taken(self, email: str, except_id: int | None = None) -> bool:
        """Whether a customer other than `except_id` has `email`, compared case-insensitively.

        A check before the write, not a unique index: two simultaneous writes can both pass.
        Customers stored before `email_key` existed are matched on the exact email.
        """
        for query in ({"email_key": _email_key(email)}, {"email": email}):
            async for doc in self.collection.find(query, {"_id": 1}).limit(2):
                if doc["_id"] != except_id:
                    return True
        return False

    async def set_token_hash(self, customer_id: int, token_hash: str) -> bool:
        """Replace the customer's token (the old one stops working at once)."""
        result = await self.collection.update_one({"_id": customer_id}, {"$set": {"token_hash": token_hash}})
        return result.matched_count == 1

    async def update_profile(self, customer_id: int, changes: dict) -> dict | None:
        changes = {k: v for k, v in changes.items() if k in PROFILE_FIELDS}
        if not changes:
            return await self.get(customer_id)
        if "email" in changes:
            changes["email_key"] = _email_key(changes["email"])
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
        """Add to a line; with `max_quantity`, only if the line stays within it (else None).

        A line stored below zero (left by a crash in an older cart clean-up) counts as 0:
        it becomes `quantity`, so it never swallows an add.
        """
        path = _cart_path(product_id)
        limit = {} if max_quantity is None else {"$lte": max_quantity - quantity}
        # `$and`, not `{"_id": ..., "$or": ...}`: nx-27017 lets such an `$or` escape the `_id`
        # condition in a write, which then changes another customer's cart.
        fits = {"$or": [{path: {"$exists": False}}, {path: {"$gte": 0, **limit}}]}
        doc = await self.collection.find_one_and_update(
            {"$and": [{"_id": customer_id}, fits]}, {"$inc": {path: quantity}},
            return_document=ReturnDocument.AFTER)
        if doc is not None or (max_quantity is not None and quantity > max_quantity):
            return doc
        # Missed: over the limit, no such customer, or a negative line (a second update, only then).
        return await self.collection.find_one_and_update(
            {"_id": customer_id, path: {"$lt": 0}}, {"$set": {path: quantity}},
            return_document=ReturnDocument.AFTER)

    async def set_cart_quantity(self, customer_id: int, product_id: int, quantity: int) -> dict | None:
        """Set a line (0 or less removes it); whatever was stored, negative included, is replaced."""
        path = _cart_path(product_id)
        update = {"$set": {path: quantity}} if quantity > 0 else {"$unset": {path: ""}}
        return await self.collection.find_one_and_update(
            {"_id": customer_id}, update, return_document=ReturnDocument.AFTER
        )

    async def remove_ordered_items(self, customer_id: int, quantities: dict[int, int],
                                   order_key: str | None = None, *, release_lock: bool = False,
                                   as_read: dict | None = None, held: float | None = None) -> bool:
        """Take ordered quantities out of the cart; lines added since stay.

        With `order_key`, at most once per order (recorded in `cleared.<order_key>`);
        returns False when that order's items were already removed. `release_lock` also
        releases the checkout lock in the same update, only while it still holds `held`
        (the value our acquire set, when given: see `release_checkout_lock`); the items
        leave the cart either way. `as_read` (the customer as the caller last read it) lets
        old `cleared` entries be pruned in it too.

        One round trip when every ordered line is still exactly the ordered quantity (the
        usual case): those lines are unset under a guard on their quantities. Otherwise the
        cart is read and written once: each ordered line becomes max(0, have - ordered)
        (unset at 0), guarded on the values read, retried if the shopper changed it between.
        """
        if not quantities and not release_lock:
            return False
        now = clock.timestamp()
        done_guard = {f"cleared.{order_key}": {"$exists": False}} if order_key else {}
        marks: dict = {f"cleared.{order_key}": now} if order_key else {}
        lock_guard = _lock_guard(held) if release_lock else {}
        prune = _stale_cleared(as_read, now)
        # Fast path: the ordered lines are untouched since the checkout (and the lock is ours).
        unchanged = {_cart_path(p): int(q) for p, q in quantities.items()}
        update = _update(set_={**marks, **({"checkout_lock": 0.0} if release_lock else {})},
                         unset={**prune, **{path: "" for path in unchanged}})
        result = await self.collection.update_one(
            {"_id": customer_id, **done_guard, **unchanged, **lock_guard}, update)
        if result.matched_count:
            return True
        # The shopper changed an ordered line meanwhile, this order was done already, or
        # our lock lapsed and was taken: the cart first, then the lock if still ours.
        removed = await self._remove_changed_lines(customer_id, quantities, order_key, marks, prune)
        if release_lock:
            await self.release_checkout_lock(customer_id, held=held)
        return removed

    async def _remove_changed_lines(self, customer_id: int, quantities: dict[int, int], order_key: str | None,
                                    marks: dict, prune: dict) -> bool:
        """The slow path of `remove_ordered_items`: one read, one guarded write, per attempt.

        A single write (never an `$inc` and a separate clean-up) so that a crash leaves
        either the whole removal with its `cleared` mark or none of it, and no line ever
        goes below zero.
        """
        for _attempt in range(CART_WRITE_ATTEMPTS):
            doc = await self.collection.find_one({"_id": customer_id}, projection={"cart": 1, "cleared": 1})
            if doc is None or (order_key and order_key in (doc.get("cleared") or {})):
                return False
            cart = doc.get("cart") or {}
            guard: dict = {}
            left: dict = {}
            gone: dict = {}
            for product, ordered in quantities.items():
                path, have = _cart_path(product), cart.get(str(int(product)))
                if have is None:  # not in the cart (any more): nothing to take out
                    guard[path] = {"$exists": False}
                    continue
                guard[path] = have
                remaining = int(have) - int(ordered)  # a negative line (an old crash's) goes too
                if remaining > 0:
                    left[path] = remaining
                else:
                    gone[path] = ""
            update = _update(set_={**left, **marks}, unset={**gone, **prune})
            if not update:
                return True  # nothing ordered is in the cart, and no order to mark
            done_guard = {f"cleared.{order_key}": {"$exists": False}} if order_key else {}
            # Guarded on every value read and on the order not done yet: a miss means the
            # shopper (or another clean-up) changed the cart in between; read it again.
            result = await self.collection.update_one({"_id": customer_id, **done_guard, **guard}, update)
            if result.matched_count:
                return True
        raise RuntimeError(f"customer {customer_id}: the cart kept changing; its ordered items are "
                           f"left for the next attempt")

    # -- checkout lock: one checkout per customer at a time
    async def acquire_checkout_lock(self, customer_id: int, seconds: float) -> dict | None:
        """Take the lock: the customer as it is now (the checkout's one read), else None."""
        now = clock.timestamp()
        return await self.collection.find_one_and_update(
            {"_id": customer_id, "checkout_lock": {"$lt": now}},
            {"$set": {"checkout_lock": now + seconds}},
            return_document=ReturnDocument.AFTER,
        )

    async def acquire_checkout_lock_by_token(self, token_hash: str, seconds: float) -> dict | None:
        """Authenticate and take the lock in one update: the customer, else None.

        None means an unknown token or a lock held by another checkout; `by_token_hash`
        tells the two apart (a second read only on that path).
        """
        now = clock.timestamp()
        return await self.collection.find_one_and_update(
            {"token_hash": token_hash, "checkout_lock": {"$lt": now}},
            {"$set": {"checkout_lock": now + seconds}},
            return_document=ReturnDocument.AFTER,
        )

    async def release_checkout_lock(self, customer_id: int, last_checkout: dict | None = None,
                                    as_read: dict | None = None, held: float | None = None) -> bool:
        """Release the lock (recording `last_checkout` if given); prunes old `cleared` entries of `as_read`.

        `held`: the lock value our acquire set (`checkout_lock` of the customer it returned).
        The lock is released only while it still holds that value: a lock that lapsed and
        was taken by another checkout is that checkout's (nothing is written then). Values
        are unique: a lock is taken only after the previous one lapsed, so later. Without
        `held` (an operator's reset) the lock is released whoever holds it.
        """
        changes: dict = {"checkout_lock": 0.0}
        if last_checkout is not None:
            changes["last_checkout"] = last_checkout
        update = _update(set_=changes, unset=_stale_cleared(as_read, clock.timestamp()))
        result = await self.collection.update_one({"_id": customer_id, **_lock_guard(held)}, update)
        return result.matched_count == 1
