"""The `checkout-server` command: serve, plugins, fake-gateway."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

from checkout_server.app import Application
from checkout_server.checkout.lock import LOCK_SECONDS
from checkout_server.config import ConfigError, config_path, load_config
from checkout_server.demo import (
    DEMO_CONFIG_PATH,
    follow_listen_address,
    print_demo,
    seed_demo,
    with_storefront,
)
from checkout_server.http_server import ServerSettings, build_http_server
from checkout_server.methods.table import MethodTable
from checkout_server.observability.logs import LOG_FORMATS, configure_logging
from checkout_server.plugin.manager import (
    PLUGINS_ENV,
    PluginError,
    collect_providers,
    collect_routes,
    get_plugin_manager,
    get_plugins,
)
from checkout_server.storage import Storage
from checkout_server.storage.embedded import DataDirInUse, EmbeddedMongo

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="checkout-server", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    # A string default goes through `type`, so a bad PORT is a usage error, not a traceback.
    serve.add_argument("--port", type=int, default=os.environ.get("PORT", "8888"))
    serve.add_argument("--config", help="config file (default: $CHECKOUT_CONFIG or config/checkout.toml)")
    serve.add_argument("--demo", action="store_true",
                       help="seed a demo catalog and customer and print a ready-to-paste curl")

    plugins = sub.add_parser("plugins", help="list installed plugins and their providers")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.add_argument("--config", help="also check this config file and list its methods "
                                          "(exit 2 if it would not load)")

    fake = sub.add_parser("fake-gateway", help="run a local fake of a payment gateway (offline development)")
    fake.add_argument("name", help="the gateway: stripe, paypal, zarinpal, or a third-party plugin's")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=0, help="default: any free port")

    args = parser.parse_args(argv)
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        parser.error(f"LOG_LEVEL={level}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    log_format = os.environ.get("LOG_FORMAT", "text").lower()
    if log_format not in LOG_FORMATS:
        parser.error(f"LOG_FORMAT={log_format}: use text or json")
    configure_logging(level, log_format)
    try:
        if args.command == "serve":
            return asyncio.run(serve_forever(args))
        if args.command == "plugins":
            return list_plugins(args)
        if args.command == "fake-gateway":
            return asyncio.run(serve_fake_gateway(args))
    except ConfigError as exc:
        print(f"checkout-server: config error: {exc}", file=sys.stderr)
        return 2
    except PluginError as exc:
        print(f"checkout-server: plugin error: {exc}", file=sys.stderr)
        return 2
    except DataDirInUse as exc:
        print(f"checkout-server: {exc}", file=sys.stderr)
        return 2
    return 1


def list_plugins(args) -> int:
    pm = get_plugin_manager()
    plugins = get_plugins(pm)
    methods = None
    if args.config:
        # The checks start-up and SIGHUP make, so an admin can try a file before a reload.
        table = MethodTable.build(load_config(args.config), *collect_providers(pm))
        collect_routes(pm)
        methods = table.describe()
    if args.json:
        print(json.dumps(plugins if methods is None else {"plugins": plugins, "methods": methods},
                         indent=2))
        return 0
    if not plugins:
        allowed = os.environ.get(PLUGINS_ENV)
        # With CHECKOUT_PLUGINS set, installed plugins may well have been left out.
        print(f'no plugins loaded ({PLUGINS_ENV}="{allowed}")' if allowed is not None
              else "no plugins installed")
    for plugin in plugins:
        version = plugin["version"] or "?"
        print(f"{plugin['name']} ({plugin['distribution'] or 'unpackaged'} {version})")
        for kind in ("payment", "shipping"):
            for name in plugin[f"{kind}_providers"]:
                print(f"  {kind}: {name}")
    if methods is not None:
        print(f"methods in {args.config}:")
        for m in methods:
            state = "active" if m["active"] else "inactive"
            print(f"  {m['kind']} {m['id']}: {m['title']} ({m['provider']}, {state})")
    return 0


def resolve_config(args):
    config = _read_config(args)
    if args.demo:  # the demo runs on this machine: its loopback URLs follow --port/PORT
        config = with_storefront(follow_listen_address(config, args.host, args.port))
    return config


def _read_config(args):
    path = config_path(args.config)
    if args.demo and not args.config and not os.environ.get("CHECKOUT_CONFIG") and not os.path.exists(path):
        path = str(DEMO_CONFIG_PATH)
    if not os.path.exists(path) and not args.config and not os.environ.get("CHECKOUT_CONFIG"):
        log.warning("no config file at %s: running with no payment or shipping methods", path)
        return load_config(None)
    return load_config(path)


async def serve_forever(args) -> int:
    # Signals are ours from the start: a SIGTERM during start-up stops cleanly (exit 0), a
    # SIGHUP before the methods exist has nothing to reload.
    stop = asyncio.Event()
    running: dict = {}
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: _on_sighup(running.get("app"), args))

    config = resolve_config(args)
    server_settings = ServerSettings.from_environ()  # a bad value exits 2 before anything starts
    # Fail on an unknown provider or bad settings before starting anything.
    plugin_manager = get_plugin_manager()
    MethodTable.build(config, *collect_providers(plugin_manager))
    collect_routes(plugin_manager)
    # Only a file that builds is announced: a refused one is reported as an error alone.
    log.info("config %s: %d payment and %d shipping methods, site %s", config.path or "(none)",
             len(config.payment_methods), len(config.shipping_methods), config.site.base_url)
    embedded = None
    uri = os.environ.get("MONGODB_URI")
    if not uri:
        data_dir = os.environ.get("CHECKOUT_DATA_DIR", "./var")
        embedded = EmbeddedMongo(data_dir)
        uri = embedded.start()
    storage = Storage.connect(uri, "checkout")
    try:
        app = Application(storage, config, plugin_manager=plugin_manager,
                          admin_token=os.environ.get("CHECKOUT_ADMIN_TOKEN"))
        await app.startup()
        running["app"] = app
        if stop.is_set():
            await app.shutdown()
            return 0
        if args.demo:
            seeded = await seed_demo(storage, app.method_registry.table)
            # The storefront writes it into its page for a browser on this machine only.
            app.settings["demo_token"] = seeded["token"]
        server = build_http_server(app, server_settings)
        server.listen(args.port, args.host)
        log.info("checkout-server listening on http://%s:%s (database: %s)", args.host, args.port,
                 "embedded" if embedded else "MONGODB_URI")
        shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
        if args.demo:
            print_demo(seeded, f"http://{shown_host}:{args.port}")
        elif config.site.storefront:
            log.info("demo storefront at http://%s:%s/ (paste a customer token there)", shown_host, args.port)
        await stop.wait()
        log.info("stopping: draining in-flight requests")
        server.stop()
        # A checkout may wait on its gateway for up to the checkout lock's length.
        await drain(app, timeout=LOCK_SECONDS)
        await asyncio.wait_for(server.close_all_connections(), timeout=5)
        await app.shutdown()
        log.info("stopped")
        return 0
    finally:
        await storage.close()
        if embedded is not None:
            embedded.stop()


def _on_sighup(app, args) -> None:
    if app is None:
        log.warning("SIGHUP during start-up ignored: the config is being loaded now")
        return
    asyncio.ensure_future(reload_config(app, args))


async def drain(app, timeout: float) -> None:
    """Wait until the requests in flight have answered (new ones are no longer accepted)."""
    inflight = app.inflight_requests
    deadline = asyncio.get_running_loop().time() + timeout
    while inflight and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    if inflight:
        log.warning("%d requests still running after %ss: closing anyway", len(inflight), timeout)


async def reload_config(app, args) -> bool:
    """SIGHUP: re-read the config file and swap the method table; a bad file changes nothing.

    Nor does a file with another `[site] currency`: prices carry no currency of their own,
    so a new one would silently reprice the whole catalog (and every cart) while running.
    """
    try:
        config = resolve_config(args)
        running = app.method_registry.table.site.currency
        if config.site.currency != running:
            raise ConfigError(f"{config.path or '<config>'}: [site] currency {config.site.currency} "
                              f"(running with {running}): currency cannot change while running: "
                              f"restart the service after repricing")
        table = app.method_registry.build(config)
        await app.method_registry.swap(table)
    except Exception as exc:  # noqa: BLE001 -- a bad new file keeps the old table
        log.error("config reload refused, keeping the current methods: %s", exc)
        return False
    log.info("config reloaded: %d payment and %d shipping methods",
             len(table.payment), len(table.shipping))
    return True


async def serve_fake_gateway(args) -> int:
    """Serve a plugin's fake gateway until SIGINT/SIGTERM; point a method's `base_url` at it."""
    # Imported here: the fakes' aiohttp server is for this command only.
    from checkout_server.plugin.fake_gateway import (
        collect_fake_gateways,
        serve_until_stopped,
    )

    fakes = collect_fake_gateways(get_plugin_manager())
    if args.name not in fakes:
        known = ", ".join(sorted(fakes)) or "none installed"
        print(f"checkout-server: no fake gateway named {args.name!r} (known: {known})", file=sys.stderr)
        return 2
    await serve_until_stopped(fakes[args.name], args.host, args.port, args.name)
    return 0
