"""The `checkout-server` command: serve, plugins."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

from .config import ConfigError, config_path, load_config

log = logging.getLogger("checkout_server")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="checkout-server", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8888")))
    serve.add_argument("--config", help="config file (default: $CHECKOUT_CONFIG or config/checkout.toml)")
    serve.add_argument("--demo", action="store_true",
                       help="seed a demo catalog and customer and print a ready-to-paste curl")

    plugins = sub.add_parser("plugins", help="list installed plugins and their providers")
    plugins.add_argument("--json", action="store_true", help="print JSON")

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "serve":
            return asyncio.run(serve_forever(args))
        if args.command == "plugins":
            return list_plugins(args)
    except ConfigError as exc:
        print(f"checkout-server: config error: {exc}", file=sys.stderr)
        return 2
    return 1


def list_plugins(args) -> int:
    from .pluginmanager import get_plugin_manager, get_plugins

    plugins = get_plugins(get_plugin_manager())
    if args.json:
        print(json.dumps(plugins, indent=2))
        return 0
    if not plugins:
        print("no plugins installed")
    for plugin in plugins:
        version = plugin["version"] or "?"
        print(f"{plugin['name']} ({plugin['distribution'] or 'unpackaged'} {version})")
        for kind in ("payment", "shipping"):
            for name in plugin[f"{kind}_providers"]:
                print(f"  {kind}: {name}")
    return 0


def resolve_config(args):
    path = config_path(args.config)
    if args.demo and not args.config and not os.environ.get("CHECKOUT_CONFIG") and not os.path.exists(path):
        from .demo import DEMO_CONFIG_PATH
        path = str(DEMO_CONFIG_PATH)
    if not os.path.exists(path) and not args.config and not os.environ.get("CHECKOUT_CONFIG"):
        log.warning("no config file at %s: running with no payment or shipping methods", path)
        return load_config(None)
    return load_config(path)


async def serve_forever(args) -> int:
    from tornado.httpserver import HTTPServer

    from .app import Application
    from .storage import Storage
    from .storage.embedded import EmbeddedMongo

    config = resolve_config(args)
    embedded = None
    uri = os.environ.get("MONGODB_URI")
    if not uri:
        data_dir = os.environ.get("CHECKOUT_DATA_DIR", "./var")
        embedded = EmbeddedMongo(data_dir)
        uri = embedded.start()
    storage = Storage.connect(uri, "checkout")
    try:
        app = Application(storage, config, admin_token=os.environ.get("CHECKOUT_ADMIN_TOKEN"))
        await app.startup()
        if args.demo:
            from .demo import print_demo, seed_demo
            seeded = await seed_demo(storage, app.method_registry.table)
        server = HTTPServer(app, xheaders=True, max_body_size=1024 * 1024)
        server.listen(args.port, args.host)
        log.info("checkout-server listening on http://%s:%s (database: %s)", args.host, args.port,
                 "embedded" if embedded else "MONGODB_URI")
        if args.demo:
            print_demo(seeded, f"http://{args.host}:{args.port}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reload_config(app, args)))
        await stop.wait()
        log.info("stopping: draining in-flight requests")
        server.stop()
        await asyncio.wait_for(server.close_all_connections(), timeout=30)
        await app.shutdown()
        log.info("stopped")
        return 0
    finally:
        storage.close()
        if embedded is not None:
            embedded.stop()


async def reload_config(app, args) -> None:
    try:
        config = resolve_config(args)
        table = app.method_registry.build(config)
    except Exception as exc:  # a bad new file keeps the old table
        log.error("config reload refused, keeping the current methods: %s", exc)
        return
    await app.method_registry.swap(table)
    log.info("config reloaded: %d payment and %d shipping methods",
             len(table.payment), len(table.shipping))
