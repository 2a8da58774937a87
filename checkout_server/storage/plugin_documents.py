"""A plugin's own documents: one collection per plugin, handed out by the core.

Plugins never see the driver or build a MongoDB filter: they get `PluginDocuments`, whose
few operations keep to the portable subset (lookups by a string `_id`, equality on top-level
fields, guarded single-document `$set`) and are proved on every backend by the storage
contract suite. Field names and values are checked here, so nothing a plugin stores or
asks for can become an operator or a field path.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

PLUGIN_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,60}$")
MAX_LIMIT = 1000
# What an equality condition may compare with: no dict (an operator) and no list.
SCALARS = (str, int, float, bool, datetime, type(None))


class DocumentExists(Exception):
    """`PluginDocuments.insert` of an `_id` that is already stored."""


def collection_name(plugin: str) -> str:
    """`plugin_<name>`: every plugin's documents apart from the core's and each other's."""
    if not isinstance(plugin, str) or not PLUGIN_NAME.match(plugin):
        raise ValueError(f"not a plugin name for its documents: {plugin!r}")
    return "plugin_" + re.sub(r"[^A-Za-z0-9]+", "_", plugin).lower()


def _check_id(value) -> str:
    # Strings only: nx-27017 matches the string "7" with the integer 7, so mixed ids would collide.
    if not isinstance(value, str) or not value:
        raise TypeError(f"a document _id is a non-empty string, not {value!r}")
    return value


def _check_fields(fields: Mapping[str, Any], what: str, *, scalars_only: bool) -> dict:
    if not isinstance(fields, Mapping):
        raise TypeError(f"{what} must be a mapping of field names to values")
    for name, value in fields.items():
        if not isinstance(name, str) or not name or name.startswith("$") or "." in name or name == "_id":
            raise ValueError(f"{what}: {name!r} is not a top-level field name (no '$', no '.', not _id)")
        if scalars_only and not isinstance(value, SCALARS):
            raise TypeError(f"{what}: {name} must be compared with a str, int, float, bool, datetime or None")
    return dict(fields)


def _aware(value):
    """Datetimes as every backend should give them: UTC-aware (mongomock's are naive)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, dict):
        return {key: _aware(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_aware(item) for item in value]
    return value


class PluginDocuments:
    """One plugin's documents: dicts with a string `_id`."""

    def __init__(self, collection, plugin: str):
        self.collection = collection
        self.plugin = plugin

    def __repr__(self) -> str:
        return f"<PluginDocuments of {self.plugin!r}>"

    async def insert(self, document: Mapping[str, Any]) -> dict:
        """Store a new document; without an `_id` it gets a random string one. Returns it.

        Raises DocumentExists if a document with that `_id` is already stored.
        """
        doc = dict(document)
        doc["_id"] = _check_id(doc["_id"]) if "_id" in doc else secrets.token_urlsafe(12)
        _check_fields({k: v for k, v in doc.items() if k != "_id"}, "insert", scalars_only=False)
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError:
            raise DocumentExists(f"{self.plugin}: document {doc['_id']!r} exists") from None
        return doc

    async def get(self, document_id) -> dict | None:
        """The document with this `_id`, or None."""
        return _aware(await self.collection.find_one({"_id": _check_id(document_id)}))

    async def find(self, where: Mapping[str, Any] | None = None, *, limit: int = 100) -> list[dict]:
        """Documents whose top-level fields equal `where`'s values, oldest `_id` first, at most `limit`."""
        query = _check_fields(where or {}, "where", scalars_only=True)
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        found = await self.collection.find(query).sort("_id", 1).limit(limit).to_list(length=limit)
        return [_aware(doc) for doc in found]

    async def update(self, document_id, changes: Mapping[str, Any], *,
                     where: Mapping[str, Any] | None = None) -> dict | None:
        """Set `changes` on one document, atomically, only if its fields equal `where`'s.

        Returns the document as changed, or None when there is no such document or `where`
        did not hold: of two updates racing with the same `where`, exactly one wins.
        """
        query = {**_check_fields(where or {}, "where", scalars_only=True), "_id": _check_id(document_id)}
        update = _check_fields(changes, "changes", scalars_only=False)
        if not update:
            raise ValueError("changes must set at least one field")
        return _aware(await self.collection.find_one_and_update(query, {"$set": update},
                                                                return_document=ReturnDocument.AFTER))

    async def delete(self, document_id) -> bool:
        """Remove the document with this `_id`; whether there was one."""
        result = await self.collection.delete_one({"_id": _check_id(document_id)})
        return result.deleted_count == 1
