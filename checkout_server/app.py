"""Builds the Tornado Application and owns what lives as long as it does."""

from __future__ import annotations

import asyncio
import logging
import re

import tornado.web

from checkout_server import clock
from checkout_server.config import Config
from checkout_server.handlers import all_handlers
from checkout_server.methods.table import MethodTable
from checkout_server.observability import http as observed
from checkout_server.observability import logs
from checkout_server.openapi import build_document
from checkout_server.payments.sweeper import SWEEP_EVERY_SECONDS, Sweeper
from checkout_server.plugin.manager import (
    collect_providers,
    collect_routes,
    get_plugin_manager,
    provider_owners,
    route_auth_problem,
)
from checkout_server.plugin.web import APIError, BaseHandler, NotFoundHandler
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

    def __init__(self, config: Config, plugin_manager, storage):
        self.plugin_manager = plugin_manager
        self.storage = storage
        self._retired: dict[MethodTable, asyncio.Task] = {}
        self._swapping = asyncio.Lock()
        self.table = self.build(config)

    def build(self, config: Config) -> MethodTable:
        """A new table from `config`; raises ConfigError/PluginError, changing nothing."""
        payment, shipping = collect_providers(self.plugin_manager)
        register_config_secrets(config)
        owners = provider_owners(self.plugin_manager)
        # Each provider gets its plugin's documents, the ones the plugin's routes get too.
        return MethodTable.build(config, payment, shipping,
                                 lambda cls: self.storage.plugin_documents(owners.get(cls, cls.name)))

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
        logs.register_secrets([admin_token or ""])
        self.method_registry = MethodRegistry(config, plugin_manager, storage)
        self.storage = storage
        # Requests being answered (BaseHandler adds and removes itself): a SIGTERM waits for them.
        self.inflight_requests: set = set()
        # Set on SIGTERM (cli.stop_serving): from then on every new request is a 503.
        self.draining = False
        for pattern, handler, *_ in all_handlers():
            problem = route_auth_problem(pattern, handler)
            if problem:  # a bug of the core's own
                raise RuntimeError(problem)
        plugin_routes = collect_routes(plugin_manager)
        routes = all_handlers() + [route.spec for route in plugin_routes]
        # Route templates name requests in logs and metrics, and paths in the OpenAPI document.
        self.route_templates = observed.RouteTemplates(routes)
        super().__init__(
            routes,
            default_handler_class=NotFoundHandler,
            storage=storage,
            method_registry=self.method_registry,
            plugin_manager=plugin_manager,
            # Which plugin each plugin route is of: BaseHandler.documents hands out its documents.
            route_plugins={route.handler: route.plugin for route in plugin_routes},
            admin_token=admin_token,
            **settings,
        )
        self.add_transform(observed.RequestIdTransform)
        self._openapi: dict | None = None

    def openapi_document(self) -> dict:
        """The OpenAPI document of this application's routes (built once: routes are fixed)."""
        if self._openapi is None:
            self._openapi = build_document(self.route_templates.routes)
        return self._openapi

    def start_request(self, server_conn, request_conn):
        # Each request in a contextvars Context of its own: its id and route on every log line.
        return observed.RequestContextDelegate(super().start_request(server_conn, request_conn))

    def get_handler_delegate(self, request, target_class, *args, **kwargs):
        logs.bind(route=self.route_templates.template(target_class, request.path))
        return super().get_handler_delegate(request, target_class, *args, **kwargs)

    def log_request(self, handler) -> None:
        observed.log_request(handler)

    def find_handler(self, request, **kwargs):
        if self.draining:
            return self.get_handler_delegate(request, ShuttingDownHandler)
        return super().find_handler(request, **kwargs)

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


# Settings whose values are credentials: masked in every log line (observability.logs).
_SECRET_SETTING = re.compile(r"(?i)secret|key|token|password|merchant|client|signature|credential")


def register_config_secrets(config: Config) -> None:
    """Register the methods' credentials (API keys, webhook secrets) so no log line shows them."""
    logs.register_secrets(value for method in (*config.payment_methods, *config.shipping_methods)
                          for name, value in method.settings.items()
                          if isinstance(value, str) and _SECRET_SETTING.search(name))


class ShuttingDownHandler(BaseHandler):
    """A request that arrives on an open connection after SIGTERM: 503, and the connection
    closes (cli.stop_serving turned keep-alive off), so the client retries elsewhere.

    Like NotFoundHandler, never a route: it defines `prepare` to answer before any token check.
    """

    auth = "public"

    def initialize(self, **kwargs):
        super().initialize(**kwargs)
        self.application.inflight_requests.discard(self)  # nothing to wait for

    async def prepare(self):
        raise APIError(503, "the service is shutting down: retry the request",
                       headers={"Retry-After": "1"})
