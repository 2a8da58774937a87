"""The `checkout-server` command: serve, plugins, fake-gateway."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

from tornado.netutil import bind_sockets

from checkout_server.app import Application
from checkout_server.checkout.lock import LOCK_SECONDS
from checkout_server.config import (
    Config,
    ConfigError,
    SiteConfig,
    config_path,
    load_config,
)
from checkout_server.demo import (
    DEMO_CONFIG_PATH,
    follow_listen_address,
    print_demo,
    seed_demo,
    with_storefront,
)
from checkout_server.http_server import ServerSettings, build_http_server
from checkout_server.methods.table import MethodTable
from checkout_server.observability import metrics
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
from checkout_server.workers import ProcessSupervisor, WorkerContext, worker_count

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
    serve.add_argument("--workers", type=worker_count, default="1", metavar="N",
                       help="HTTP worker processes (default 1; 0 or auto: one per core)")

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
    return report_errors(lambda: run_command(args))


def run_command(args) -> int:
    if args.command == "serve":
        return serve(args)
    if args.command == "plugins":
        return list_plugins(args)
    if args.command == "fake-gateway":
        return asyncio.run(serve_fake_gateway(args))
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
    named = bool(args.config or os.environ.get("CHECKOUT_CONFIG"))
    if not os.path.exists(path) and not named:
        log.warning("no config file at %s: running with no payment or shipping methods", path)
        return load_config(None)
    config = load_config(path)
    if named and _is_empty_config(path):
        # A file someone named but that holds nothing is a deploy gone wrong (a truncated
        # copy), not a wish to run a shop without methods.
        raise ConfigError(f"{path}: the file is empty (no [site], no methods)")
    return config


def _is_empty_config(path: str) -> bool:
    import tomllib

    try:
        with open(path, "rb") as file:
            return tomllib.load(file) == {}
    except (OSError, tomllib.TOMLDecodeError):
        return False  # load_config has reported it already


def serve(args) -> int:
    """Bind, start the embedded database if needed, and run the workers (workers.py)."""
    # The file is read here once so a broken or empty one stops the service before anything
    # starts; the methods' providers are made by the workers, after the fork (a provider or
    # settings error exits 2 too).
    resolve_config(args)
    ServerSettings.from_environ()  # and a bad server setting, before anything starts
    # Plugin routes are classes, checked without making any plugin instance.
    collect_routes(get_plugin_manager())
    embedded = None
    uri = os.environ.get("MONGODB_URI")
    if not uri:
        embedded = EmbeddedMongo(os.environ.get("CHECKOUT_DATA_DIR", "./var"))
        uri = embedded.start()
    try:
        sockets = bind_sockets(args.port, args.host)
    except BaseException:
        if embedded is not None:
            embedded.stop()
        raise
    # Before any fork: every worker (and this parent) writes its samples to one directory,
    # and whichever worker answers GET /metrics reports their sum.
    metrics_dir = metrics.prepare_multiprocess()
    supervisor = ProcessSupervisor(args.workers, uri, sockets, embedded,
                                   lambda context: report_errors(lambda: asyncio.run(serve_forever(args, context))))
    supervisor.on_worker_exit.append(metrics.worker_exited)
    supervisor.on_stop.append(lambda: metrics.cleanup_multiprocess(metrics_dir))
    if supervisor.database is not None:
        supervisor.database.on_restart.append(metrics.embedded_database_restarted)
    return supervisor.run()


def report_errors(run) -> int:
    """`run()`'s status; a config, plugin or data-directory error is one line and status 2."""
    try:
        return run()
    except ConfigError as exc:
        print(f"checkout-server: config error: {exc}", file=sys.stderr)
    except PluginError as exc:
        print(f"checkout-server: plugin error: {exc}", file=sys.stderr)
    except DataDirInUse as exc:
        print(f"checkout-server: {exc}", file=sys.stderr)
    return 2


async def serve_forever(args, worker: WorkerContext) -> int:
    """One worker: the Application on the inherited sockets until SIGTERM."""
    # Signals are ours from the start: a SIGTERM during start-up stops cleanly (exit 0), a
    # SIGHUP before the methods exist reloads once they do (the file may have changed since
    # this worker read it).
    stop = asyncio.Event()
    running: dict = {}
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: _on_sighup(running, args))
    if worker.stop_requested:
        stop.set()

    config = resolve_config(args)
    server_settings = ServerSettings.from_environ()  # a bad value exits 2 before anything starts
    # Fail on an unknown provider or bad settings before starting anything.
    plugin_manager = get_plugin_manager()
    MethodTable.build(config, *collect_providers(plugin_manager))
    collect_routes(plugin_manager)
    # Only a file that builds is announced: a refused one is reported as an error alone.
    if worker.index == 0:
        log.info("config %s: %d payment and %d shipping methods, site %s", config.path or "(none)",
                 len(config.payment_methods), len(config.shipping_methods), config.site.base_url)
    storage = Storage.connect(worker.uri, "checkout")
    try:
        app = Application(storage, config, plugin_manager=plugin_manager,
                          admin_token=os.environ.get("CHECKOUT_ADMIN_TOKEN"),
                          database_restarts=lambda: worker.database_restarts,
                          **background_intervals())
        await app.startup()
        running["app"] = app
        if running.pop("reload", False):
            await reload_config(app, args)
        if stop.is_set():
            await app.shutdown()
            return 0
        if args.demo and worker.first_start:
            seeded = await seed_demo(storage, app.method_registry.table)
            # The storefront writes it into its page for a browser on this machine only.
            app.settings["demo_token"] = seeded["token"]
        elif args.demo and "demo_token" in worker.shared:  # seeded by the first worker
            app.settings["demo_token"] = worker.shared["demo_token"]
        server = build_http_server(app, server_settings)
        server.add_sockets(worker.sockets)
        worker.ready(**({"demo_token": app.settings["demo_token"]} if "demo_token" in app.settings else {}))
        log.info("worker %d (pid %d) serving", worker.index, os.getpid())
        shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
        if worker.index == 0:
            log.info("checkout-server listening on http://%s:%s (database: %s, workers: %d)", args.host,
                     args.port, "embedded" if worker.embedded else "MONGODB_URI", args.workers)
        if args.demo and worker.first_start:
            print_demo(seeded, f"http://{shown_host}:{args.port}")
        elif config.site.storefront and worker.first_start:
            log.info("demo storefront at http://%s:%s/ (paste a customer token there)", shown_host, args.port)
        await stop.wait()
        await stop_serving(app, server)
        return 0
    finally:
        # Last: nothing may run against a closed client (stop_serving waited for everything).
        await storage.close()


def background_intervals() -> dict:
    """`CHECKOUT_SWEEP_SECONDS`: how often the hold sweeper and the reconciler run (default 60)."""
    value = os.environ.get("CHECKOUT_SWEEP_SECONDS")
    if not value:
        return {}
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0
    if not 0.1 <= seconds <= 3600:
        raise ConfigError(f"CHECKOUT_SWEEP_SECONDS={value}: use a number of seconds from 0.1 to 3600")
    return {"sweep_interval": seconds, "reconcile_interval": seconds}


async def stop_serving(app, server) -> None:
    """SIGTERM: accept nothing new, answer new requests on open connections with a 503 and
    `Connection: close`, let the requests in flight finish, then stop the background tasks."""
    log.info("stopping: draining %d in-flight requests", len(app.inflight_requests))
    server.stop()
    server.conn_params.no_keep_alive = True  # every answer from now on closes its connection
    app.draining = True
    # A checkout may wait on its gateway for up to the checkout lock's length.
    await drain(app, timeout=LOCK_SECONDS)
    await asyncio.wait_for(server.close_all_connections(), timeout=5)
    await app.shutdown()


def _on_sighup(running: dict, args) -> None:
    if "app" not in running:
        log.info("SIGHUP during start-up: reloading the config once started")
        running["reload"] = True
        return
    asyncio.ensure_future(reload_config(running["app"], args))


async def drain(app, timeout: float) -> None:
    """Wait until the requests in flight have answered (new ones are no longer accepted)."""
    inflight = app.inflight_requests
    deadline = asyncio.get_running_loop().time() + timeout
    while inflight and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    if inflight:
        log.warning("%d requests still running after %ss: closing anyway", len(inflight), timeout)


async def reload_config(app, args) -> bool:
    """SIGHUP: re-read the config file and swap the method table; a bad file, or one that
    check_reload refuses, changes nothing."""
    try:
        config = resolve_config(args)
        table = app.method_registry.build(config)  # the file's own errors first
        check_reload(config, app.method_registry.table.config)
        await app.method_registry.swap(table)
    except Exception as exc:  # noqa: BLE001 -- a bad new file keeps the old table
        log.error("config reload refused, keeping the current methods: %s", exc)
        return False
    log.info("config reloaded: %d payment and %d shipping methods",
             len(table.payment), len(table.shipping))
    return True


def check_reload(new: Config, running: Config) -> None:
    """Refuse (ConfigError) a reload that can only be a mistake.

    Another `[site] currency`: prices carry no currency of their own, so a new one would
    silently reprice the whole catalog (and every cart) while running. Every payment method
    gone, or `base_url`/`return_url` back to their built-in defaults while running with
    others: what an empty or truncated file (a deploy caught half-way) looks like.
    """
    where = new.path or "<config>"
    if new.site.currency != running.site.currency:
        raise ConfigError(f"{where}: [site] currency {new.site.currency} (running with "
                          f"{running.site.currency}): currency cannot change while running: "
                          f"restart the service after repricing")
    if running.payment_methods and not new.payment_methods:
        raise ConfigError(f"{where}: no [[payment_methods]] left: a reload cannot remove them all "
                          f"(is the file truncated?)")
    defaults = SiteConfig()
    for name in ("base_url", "return_url"):
        value, default = getattr(new.site, name), getattr(defaults, name)
        if value == default and getattr(running.site, name) != default:
            raise ConfigError(f"{where}: [site] {name} would fall back to its default {default} "
                              f"(running with {getattr(running.site, name)}): is [site] missing? "
                              f"Restart the service to really use the default")


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
