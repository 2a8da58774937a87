"""Builds the Tornado Application and owns what lives as long as it does."""

from __future__ import annotations

import asyncio
import logging

import tornado.web

from checkout_server import clock
from checkout_server.config import Config
from checkout_server.handlers import all_handlers
from checkout_server.methods.table import MethodTable
from checkout_server.payments.sweeper import SWEEP_EVERY_SECONDS, Sweeper
from checkout_server.plugin.manager import collect_providers, get_plugin_manager
from checkout_server.plugin.web import AUTH_LEVELS, BaseHandler, NotFoundHandler
from checkout_server.stock import commits
from checkout_server.stock.reservations import RECONCILE_EVERY_SECONDS, Reconciler

log = logging.getLogger(__name__)


class MethodRegistry:
    """Holds the current method table; a reload swaps it in one assignment.

    A handler reads `table` once and keeps that reference, so a checkout in flight during
    a reload finishes on the table it started with.
    """

    # Old providers stay open this long after a swap, for checkouts still using them.
    CLOSE_GRACE_SECONDS = 120

    def __init__(self, table: MethodTable, plugin_manager):
        self.table = table
        self.plugin_manager = plugin_manager
        self._retired: dict[MethodTable, asyncio.Task] = {}
        self._swapping = asyncio.Lock()

    def build(self, config: Config) -> MethodTable:
        """A new table from `config`; raises ConfigError/PluginError, changing nothing."""
        payment, shipping = collect_providers(self.plugin_manager)
        return MethodTable.build(config, payment, shipping)

    async def swap(self, new_table: MethodTable) -> None:
        """Start `new_table`'s providers, then make it current; on failure keep the old one."""
        async with self._swapping:
            try:
                await new_table.startup()
            except BaseException:
                await new_table.close()
                raise
            old, self.table = self.table, new_table
            self._retired[old] = asyncio.ensure_future(self._close_later(old))

    async def _close_later(self, table: MethodTable) -> None:
        try:
            await asyncio.sleep(self.CLOSE_GRACE_SECONDS)
        finally:
            # Runs on shutdown's cancel too: every retired table is closed exactly once.
            self._retired.pop(table, None)
            await table.close()

    async def close(self) -> None:
        retired = list(self._retired.values())
        for task in retired:
            task.cancel()
        await asyncio.gather(*retired, return_exceptions=True)
        await self.table.close()


class Application(tornado.web.Application):
    def __init__(self, storage, config: Config, *, plugin_manager=None, admin_token: str | None = None,
                 **settings):
        plugin_manager = plugin_manager or get_plugin_manager()
        payment, shipping = collect_providers(plugin_manager)
        table = MethodTable.build(config, payment, shipping)
        self.method_registry = MethodRegistry(table, plugin_manager)
        self.storage = storage
        # Requests being answered (BaseHandler adds and removes itself): a SIGTERM waits for them.
        self.inflight_requests: set = set()
        routes = all_handlers() + collect_routes(plugin_manager)
        for pattern, handler, *_ in routes:
            check_route_auth(pattern, handler)
        super().__init__(
            routes,
            default_handler_class=NotFoundHandler,
            storage=storage,
            method_registry=self.method_registry,
            plugin_manager=plugin_manager,
            admin_token=admin_token,
            **settings,
        )

    async def startup(self) -> None:
        """Prepare the database and the providers; call once before serving."""
        await self.storage.create_indexes()
        # The first block of order numbers: no checkout waits on the counter.
        await self.storage.orders.prepare_order_keys(clock.utcnow().year)
        await self.method_registry.table.startup()
        # Finish or undo what a crash interrupted before taking new checkouts.
        self.reconciler = Reconciler(self.storage, self.settings.get("reconcile_interval",
                                                                     RECONCILE_EVERY_SECONDS))
        await self.reconciler.start()
        self.sweeper = Sweeper(self.storage, self.method_registry,
                               self.settings.get("sweep_interval", SWEEP_EVERY_SECONDS))
        self.sweeper.start()

    async def shutdown(self) -> None:
        await commits.flush(self.storage)  # paid orders queued to be finished: now, not by the reconciler
        for task in (getattr(self, "sweeper", None), getattr(self, "reconciler", None)):
            if task is not None:
                await task.stop()
        await self.method_registry.close()


def check_route_auth(pattern: str, handler) -> None:
    """Refuse a route that could end up public by accident (RuntimeError naming it).

    Only BaseHandler.prepare checks tokens: a non-public route must use a BaseHandler, and
    no class between it and BaseHandler may redefine `prepare` (subclasses override
    `authorize`), or the token check could be skipped silently.
    """
    auth = getattr(handler, "auth", None)
    name = getattr(handler, "__qualname__", repr(handler))
    if auth not in AUTH_LEVELS:
        raise RuntimeError(f"{name} must set auth to one of {AUTH_LEVELS} (route {pattern!r})")
    is_base = isinstance(handler, type) and issubclass(handler, BaseHandler)
    if auth != "public" and not is_base:
        raise RuntimeError(f"route {pattern!r} ({name}) has auth={auth!r} but does not subclass "
                           "checkout_server.plugin.web.BaseHandler, which checks the token")
    if is_base:
        for cls in handler.__mro__[:handler.__mro__.index(BaseHandler)]:
            if "prepare" in vars(cls):
                raise RuntimeError(f"route {pattern!r} ({name}): {cls.__qualname__} overrides prepare(), "
                                   "which checks the token; override authorize() instead")


def collect_routes(plugin_manager) -> list:
    """The routes plugins add through `register_routes`, after the core's (which win)."""
    routes: list = []

    def register(pattern: str, handler_class, kwargs: dict | None = None):
        routes.append((pattern, handler_class, kwargs or {}))

    plugin_manager.hook.register_routes(register=register)
    return routes
