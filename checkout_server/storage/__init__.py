"""The storage layer: the only code that talks to MongoDB.

Every operation here keeps to the portable subset in DESIGN.md (single-document atomic
updates with guard filters, map paths instead of positional array updates, integer and
string ids) and is proven on every backend by tests/storage_contract.

The driver is PyMongo's async client. Unit tests run this layer on mongomock-motor
instead, which answers every call made here the way the async client does (awaited
single-document and bulk writes, `find` cursors read with `to_list` or `async for`,
`command`); the calls where the two APIs differ (`aggregate`, a coroutine here and a
cursor there; the client's `close`) are not used on it.
"""

import asyncio

from pymongo.errors import ConnectionFailure, ServerSelectionTimeoutError

from checkout_server.storage.counters import Counters
from checkout_server.storage.customers import Customers
from checkout_server.storage.idempotency import IdempotencyKeys
from checkout_server.storage.orders import Orders
from checkout_server.storage.plugin_documents import PluginDocuments, collection_name
from checkout_server.storage.products import Products

# Errors that mean "the database is not answering now": a 503, not a 500.
UNAVAILABLE_ERRORS = (ConnectionFailure, ServerSelectionTimeoutError)

__all__ = ["UNAVAILABLE_ERRORS", "Counters", "Customers", "IdempotencyKeys", "Orders", "Products", "Storage"]


class Storage:
    """One database, its collection families, and the client that owns it."""

    def __init__(self, db, client=None):
        self.db = db
        self.client = client
        self.counters = Counters(db.counters)
        self.customers = Customers(db.customers, self.counters)
        self.products = Products(db.products, self.counters)
        self.orders = Orders(db.orders, self.counters)
        self.idempotency = IdempotencyKeys(db.idempotency)

    def plugin_documents(self, plugin: str) -> PluginDocuments:
        """The documents of the plugin registered as `plugin`, in a collection of its own."""
        return PluginDocuments(self.db[collection_name(plugin)], plugin)

    @classmethod
    def connect(cls, uri: str, db_name: str | None = None, **client_options):
        """Open PyMongo's async client for `uri`; the database is the URI's, else `db_name`.

        The client runs on the event loop it is first used on (no threads): open it in the
        process and on the loop that will use it.
        """
        from pymongo import AsyncMongoClient
        from pymongo.uri_parser import parse_uri

        options = {"serverSelectionTimeoutMS": 5000, "tz_aware": True}
        options.update(client_options)
        client = AsyncMongoClient(uri, **options)
        name = parse_uri(uri).get("database") or db_name or "checkout"
        return cls(client[name], client)

    async def create_indexes(self) -> None:
        await self.customers.create_indexes()
        await self.products.create_indexes()
        await self.orders.create_indexes()
        await self.idempotency.create_indexes()

    async def ping(self, timeout: float = 2.0) -> bool:
        """Whether the database answers within `timeout` seconds (a hung one does not)."""
        try:
            await asyncio.wait_for(self.db.command("ping"), timeout)
            return True
        except Exception:  # noqa: BLE001 -- any failure means "not healthy"
            return False

    async def close(self) -> None:
        """Close the client (on the loop that used it); in-memory storage has none."""
        await self.orders.close()
        if self.client is not None:
            await self.client.close()
