"""The plugin manager: pluggy, loading the `checkout_server` entry-point group.

`CHECKOUT_PLUGINS` (comma-separated distribution or entry-point names) limits which
installed plugins load; unset, all of them do.
"""

import importlib.metadata
import logging
import os

import pluggy

from . import hookspecs

log = logging.getLogger("checkout_server.plugins")

ENTRY_POINT_GROUP = "checkout_server"


def _allowed() -> set[str] | None:
    raw = os.environ.get("CHECKOUT_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def make_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("checkout_server")
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        allowed = _allowed()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else None
            if allowed is not None and ep.name not in allowed and dist not in allowed:
                continue
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
            pm._plugin_distinfo.append((plugin, ep.dist))
    # A misspelled hook fails at start-up, not silently never.
    pm.check_pending()
    return pm


pm = None  # the process's plugin manager, made on first use


def get_plugin_manager() -> pluggy.PluginManager:
    global pm
    if pm is None:
        pm = make_plugin_manager()
    return pm


def collect_providers(plugin_manager: pluggy.PluginManager) -> tuple[dict, dict]:
    """{name: class} of every payment and shipping provider the plugins register."""
    payment: dict[str, type] = {}
    shipping: dict[str, type] = {}

    def into(table, kind):
        def register(cls):
            name = getattr(cls, "name", None)
            if not name:
                raise TypeError(f"{kind} provider {cls!r} has no name")
            if name in table and table[name] is not cls:
                raise ValueError(f"two {kind} providers are named {name!r}")
            table[name] = cls
        return register

    plugin_manager.hook.register_payment_providers(register=into(payment, "payment"))
    plugin_manager.hook.register_shipping_providers(register=into(shipping, "shipping"))
    return payment, shipping


def get_plugins(plugin_manager: pluggy.PluginManager) -> list[dict]:
    """Name, version, hooks and providers of each loaded plugin."""
    dists = {id(plugin): dist for plugin, dist in plugin_manager.list_plugin_distinfo()}
    out = []
    for plugin in plugin_manager.get_plugins():
        name = plugin_manager.get_name(plugin)
        dist = dists.get(id(plugin))
        hooks = sorted(h.name for h in plugin_manager.get_hookcallers(plugin) or [])
        payment, shipping = [], []
        for hook, bucket in (("register_payment_providers", payment),
                             ("register_shipping_providers", shipping)):
            impl = getattr(plugin, hook, None)
            if impl is not None:
                impl(register=lambda cls, b=bucket: b.append(cls.name))
        out.append({
            "name": name,
            "distribution": dist.metadata["Name"] if dist else None,
            "version": dist.version if dist else None,
            "hooks": hooks,
            "payment_providers": payment,
            "shipping_providers": shipping,
        })
    return sorted(out, key=lambda p: p["name"])
