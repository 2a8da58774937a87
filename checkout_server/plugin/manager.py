"""The plugin manager: pluggy, loading the `checkout_server` entry-point group.

`CHECKOUT_PLUGINS` (comma-separated entry-point or distribution names, compared the PEP 503
way: case, `-`, `_` and `.` do not matter) limits which installed plugins load; unset, all
of them do; empty, none do (the core's own tests). A module name is not looked at: it
matches only when it happens to spell the distribution's name (`checkout_cod`).
"""

from __future__ import annotations

import difflib
import importlib.metadata
import logging
import os
import re
from typing import NamedTuple

import pluggy
import tornado.web

from checkout_server.plugin import hookspecs
from checkout_server.plugin.providers import PaymentProvider, ShippingProvider
from checkout_server.plugin.web import AUTH_LEVELS, BaseHandler

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "checkout_server"
PLUGINS_ENV = "CHECKOUT_PLUGINS"


class PluginError(Exception):
    """A plugin that cannot be loaded or registers something invalid: start-up stops."""


class CheckoutPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers which distribution each plugin came from."""

    def __init__(self):
        super().__init__("checkout_server")
        self.add_hookspecs(hookspecs)
        self.distributions: dict[str, importlib.metadata.Distribution] = {}


def _normalise(name: str) -> str:
    # PEP 503: "Checkout_COD", "checkout.cod" and "checkout-cod" are one distribution.
    return re.sub(r"[-_.]+", "-", name).lower()


def allowed_plugins() -> set[str] | None:
    """The names in CHECKOUT_PLUGINS, normalised; None when every plugin may load."""
    raw = os.environ.get(PLUGINS_ENV)
    if raw is None:
        return None
    return {_normalise(name.strip()) for name in raw.split(",") if name.strip()}


def make_plugin_manager(load_entry_points: bool = True) -> CheckoutPluginManager:
    """A plugin manager with the hookspecs and (by default) the installed plugins loaded."""
    pm = CheckoutPluginManager()
    if load_entry_points:
        load_entry_point_plugins(pm)
    return pm


def load_entry_point_plugins(pm: CheckoutPluginManager) -> None:
    allowed = allowed_plugins()
    matched: set[str] = set()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist_name = ep.dist.name if ep.dist else None
        names = {_normalise(ep.name)} | ({_normalise(dist_name)} if dist_name else set())
        if allowed is not None and not names & allowed:
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:
            where = f"distribution {dist_name}" if dist_name else ep.value
            raise PluginError(f"plugin {ep.name!r} ({where}) failed to load: {exc}") from exc
        if ep.dist is not None:
            pm.distributions[ep.name] = ep.dist
        matched |= names
    for name in sorted((allowed or set()) - matched):
        log.warning("%s names %r, but no installed plugin has that name", PLUGINS_ENV, name)
    check_hooks(pm)


def check_hooks(pm: pluggy.PluginManager) -> None:
    """Fail fast on a hook implementation that matches no hookspec (a misspelled hook).

    The error names the plugin and the closest hook: `register_payment_provider` was
    meant to be `register_payment_providers`.
    """
    callers = {name: caller for name, caller in vars(pm.hook).items() if not name.startswith("_")}
    known = sorted(name for name, caller in callers.items() if caller.has_spec())
    for name, caller in sorted(callers.items()):
        if caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            plugin = plugin_name(pm, impl.plugin)
            closest = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {closest[0]!r}?" if closest else f"the hooks are {', '.join(known)}"
            raise PluginError(f"plugin {plugin!r}: unknown hook {name!r} — {hint}")
    # pluggy's own check, for whatever the scan above would not see.
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) if exc.plugin is not None else "?"
        raise PluginError(f"plugin {name!r}: {exc}") from exc


def plugin_name(pm: pluggy.PluginManager, plugin) -> str:
    """The plugin's registered name (its entry point's); pluggy names an object registered
    without one by its id, so that one goes by its module's or class's name."""
    name = pm.get_name(plugin)
    if name and not name.isdigit():
        return name
    return getattr(plugin, "__name__", None) or type(plugin).__name__


pm: CheckoutPluginManager | None = None  # the process's plugin manager, made on first use


def get_plugin_manager() -> CheckoutPluginManager:
    global pm
    if pm is None:
        pm = make_plugin_manager()
    return pm


def _registrar(table: dict, base: type, kind: str, plugin_name: str | None = None):
    def register(cls):
        who = f"plugin {plugin_name!r}: " if plugin_name else ""
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(f"{who}{cls!r} registered as a {kind} provider is not a "
                              f"{base.__name__} subclass")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"{who}{kind} provider {cls.__name__} has no name")
        if kind == "payment" and getattr(cls, "flow", None) not in ("redirect", "direct"):
            raise PluginError(f"{who}payment provider {name!r}: flow must be 'redirect' or 'direct'")
        if name in table and table[name] is not cls:
            raise PluginError(f"{who}two {kind} providers are named {name!r}: "
                              f"{table[name].__module__}.{table[name].__name__} and "
                              f"{cls.__module__}.{cls.__name__}")
        table[name] = cls
    return register


def collect_providers(plugin_manager: pluggy.PluginManager) -> tuple[dict, dict]:
    """{name: class} of every payment and shipping provider the plugins register."""
    payment: dict[str, type] = {}
    shipping: dict[str, type] = {}
    plugin_manager.hook.register_payment_providers(
        register=_registrar(payment, PaymentProvider, "payment"))
    plugin_manager.hook.register_shipping_providers(
        register=_registrar(shipping, ShippingProvider, "shipping"))
    return payment, shipping


def provider_owners(plugin_manager: pluggy.PluginManager) -> dict[type, str]:
    """{provider class: the name of the plugin that registered it}, for the plugin's documents."""
    owners: dict[type, str] = {}
    for hook in ("register_payment_providers", "register_shipping_providers"):
        for impl in getattr(plugin_manager.hook, hook).get_hookimpls():
            plugin = plugin_name(plugin_manager, impl.plugin)
            impl.function(register=lambda cls, plugin=plugin: owners.setdefault(cls, plugin))
    return owners


def get_plugins(plugin_manager: pluggy.PluginManager) -> list[dict]:
    """Name, distribution, version, hooks and providers of each loaded plugin."""
    distributions = getattr(plugin_manager, "distributions", {})
    by_plugin: dict[int, dict[str, list[str]]] = {}
    # Ask each plugin's own hookimpl, so every provider is attributed to its plugin.
    for hook, key in (("register_payment_providers", "payment_providers"),
                      ("register_shipping_providers", "shipping_providers")):
        for impl in getattr(plugin_manager.hook, hook).get_hookimpls():
            names: list[str] = by_plugin.setdefault(id(impl.plugin), {}).setdefault(key, [])
            impl.function(register=lambda cls, names=names: names.append(getattr(cls, "name", "?")))
    out = []
    for plugin in plugin_manager.get_plugins():
        name = plugin_manager.get_name(plugin)
        dist = distributions.get(name)
        provided = by_plugin.get(id(plugin), {})
        out.append({
            "name": name,
            "distribution": dist.metadata["Name"] if dist else None,
            "version": dist.version if dist else None,
            "hooks": sorted(h.name for h in plugin_manager.get_hookcallers(plugin) or []),
            "payment_providers": sorted(provided.get("payment_providers", [])),
            "shipping_providers": sorted(provided.get("shipping_providers", [])),
        })
    return sorted(out, key=lambda p: p["name"])


class PluginRoute(NamedTuple):
    """A route a plugin added through `register_routes`."""

    plugin: str
    pattern: str
    handler: type
    kwargs: dict

    @property
    def spec(self) -> tuple:
        """The (pattern, handler, kwargs) Tornado takes."""
        return (self.pattern, self.handler, self.kwargs)


def collect_routes(plugin_manager: pluggy.PluginManager) -> list[PluginRoute]:
    """The routes every plugin adds, each checked (PluginError naming the plugin and route).

    Start-up and `plugins --config` call this before anything is started, so a route that
    could end up public by accident stops the service with one line, not a traceback.
    """
    routes: list[PluginRoute] = []
    # In pluggy's call order (the last registered plugin first), each plugin's own impl,
    # so every route is attributed to its plugin.
    for impl in reversed(plugin_manager.hook.register_routes.get_hookimpls()):
        plugin = plugin_name(plugin_manager, impl.plugin)

        def register(pattern: str, handler_class, kwargs: dict | None = None, plugin: str = plugin):
            routes.append(PluginRoute(plugin, pattern, handler_class, kwargs or {}))

        impl.function(register=register)
    for route in routes:
        problem = route_auth_problem(route.pattern, route.handler)
        if problem:
            raise PluginError(f"plugin {route.plugin!r}: {problem}")
    return routes


def route_auth_problem(pattern: str, handler) -> str | None:
    """Why a route could end up public by accident, or None.

    Only BaseHandler.prepare checks tokens: a non-public route must use a BaseHandler, and
    no class between it and BaseHandler may redefine `prepare` (subclasses override
    `authorize`), or the token check could be skipped silently.
    """
    name = getattr(handler, "__qualname__", repr(handler))
    if not (isinstance(handler, type) and issubclass(handler, tornado.web.RequestHandler)):
        return f"route {pattern!r}: {name} is not a tornado.web.RequestHandler class"
    auth = getattr(handler, "auth", None)
    if auth not in AUTH_LEVELS:
        return f"route {pattern!r}: {name} must set auth to one of {', '.join(AUTH_LEVELS)} (got {auth!r})"
    is_base = issubclass(handler, BaseHandler)
    if auth != "public" and not is_base:
        return (f"route {pattern!r}: {name} has auth={auth!r} but does not subclass "
                "checkout_server.plugin.BaseHandler, which checks the token")
    if is_base:
        for cls in handler.__mro__[:handler.__mro__.index(BaseHandler)]:
            if "prepare" in vars(cls):
                return (f"route {pattern!r}: {cls.__qualname__} overrides prepare(), which checks "
                        "the token; override authorize() instead")
    return None
