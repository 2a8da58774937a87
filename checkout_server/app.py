"""Builds the Tornado Application and owns what lives as long as it does."""

from __future__ import annotations

import asyncio
import logging

import tornado.web

from .config import Config
from .handlers import all_handlers
from .handlers.base import AUTH_LEVELS, NotFoundHandler
from .methods import MethodTable
from .pluginmanager import collect_providers, get_plugin_manager

log = logging.getLogger("checkout_server.app")


class MethodRegistry:
    """Holds the current method table; a reload swaps it in one assignment."""

    # Old providers stay open this long after a swap, for checkouts still using them.
    CLOSE_GRACE_SECONDS = 120

    def __init__(self, table: MethodTable, plugin_manager):
        self.table = table
        self.plugin_manager = plugin_manager
        self._closing: set[asyncio.Task] = set()

    def build(self, config: Config) -> MethodTable:
        payment, shipping = collect_providers(self.plugin_manager)
        return MethodTable.build(config, payment, shipping)

    async def swap(self, new_table: MethodTable) -> None:
        await new_table.startup()
        old, self.table = self.table, new_table
        task = asyncio.ensure_future(self._close_later(old))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_later(self, table: MethodTable) -> None:
        await asyncio.sleep(self.CLOSE_GRACE_SECONDS)
        await table.close()

    async def close(self) -> None:
        for task in list(self._closing):
            task.cancel()
        await self.table.close()


class Application(tornado.web.Application):
    def __init__(self, storage, config: Config, *, plugin_manager=None, admin_token: str | None = None,
                 **settings):
        plugin_manager = plugin_manager or get_plugin_manager()
        payment, shipping = collect_providers(plugin_manager)
        table = MethodTable.build(config, payment, shipping)
        self.method_registry = MethodRegistry(table, plugin_manager)
        self.storage = storage
        routes = all_handlers()
        for _pattern, handler, *_ in routes:
            if getattr(handler, "auth", None) not in AUTH_LEVELS:
                raise RuntimeError(f"{handler.__name__} must set auth to one of {AUTH_LEVELS}")
        super().__init__(
            routes,
            default_handler_class=NotFoundHandler,
            storage=storage,
            method_registry=self.method_registry,
            plugin_manager=plugin_manager,
            admin_token=admin_token,
            services={},
            **settings,
        )

    async def startup(self) -> None:
        """Prepare the database and the providers; call once before serving."""
        await self.storage.create_indexes()
        await self.method_registry.table.startup()

    async def shutdown(self) -> None:
        await self.method_registry.close()
