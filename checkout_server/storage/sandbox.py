"""Sandbox payments: the decisions made on the sandbox gateway's test page.

The `sandbox` payment plugin's "gateway" is a page this service serves itself; what the
shopper chose there is recorded here, server-side, and its verification reads it back.
"""

import secrets

from pymongo import ReturnDocument

from checkout_server import clock

STATES = ("created", "paid", "cancelled")


class SandboxPayments:
    def __init__(self, collection):
        self.collection = collection

    async def create(self, order_key: str, amount: int, currency: str, return_url: str) -> dict:
        """A new payment awaiting the shopper's decision; its `_id` is the reference.

        `form_token` goes into the page's form and must come back with the decision, so
        another site cannot make the shopper's browser press Pay (CSRF).
        """
        doc = {
            "_id": f"sbx_{secrets.token_urlsafe(12)}",
            "form_token": secrets.token_urlsafe(24),
            "order_key": order_key,
            "amount": int(amount),
            "currency": currency,
            "return_url": return_url,
            "state": "created",
            "refunded": 0,  # minor units refunded, at most `amount`
            "refunds": {},  # refund attempt id -> amount
            "created_at": clock.utcnow(),
        }
        await self.collection.insert_one(doc)
        return doc

    async def get(self, reference: str) -> dict | None:
        return await self.collection.find_one({"_id": str(reference)})

    async def decide(self, reference: str, state: str) -> dict | None:
        """Record "paid" or "cancelled" once; None if already decided or unknown."""
        if state not in ("paid", "cancelled"):
            raise ValueError(f"not a sandbox decision: {state!r}")
        return await self.collection.find_one_and_update(
            {"_id": str(reference), "state": "created"},
            {"$set": {"state": state}},
            return_document=ReturnDocument.AFTER,
        )

    async def refund(self, reference: str, attempt_id: str, amount: int) -> tuple[str, dict | None]:
        """Refund `amount` of a paid payment once per `attempt_id`, never more than was paid.

        ("refunded", record) for a new refund or the repeat of an attempt's, ("refused",
        record or None) when the payment is unknown, not paid, or has less than `amount` left.
        """
        marker = f"refunds.{attempt_id}"
        current = await self.get(reference)
        if current is None or current.get("state") != "paid":
            return "refused", current
        if attempt_id in (current.get("refunds") or {}):
            return "refunded", current  # the repeat of this attempt
        record = await self.collection.find_one_and_update(
            {"_id": str(reference), "state": "paid", marker: {"$exists": False},
             "refunded": {"$lte": int(current["amount"]) - int(amount)}},
            {"$inc": {"refunded": int(amount)}, "$set": {marker: int(amount)}},
            return_document=ReturnDocument.AFTER,
        )
        if record is None:
            current = await self.get(reference)
            if current is not None and attempt_id in (current.get("refunds") or {}):
                return "refunded", current  # a racing repeat of this attempt got there first
            return "refused", current
        return "refunded", record
