"""A real `checkout-server serve --demo` process for tests: start it, read its token, stop it."""

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

DEMO_PROVIDERS = {"payment": {"cash_on_delivery", "sandbox"},
                  "shipping": {"flat_rate", "digital_delivery", "store_pickup"}}


def missing_demo_providers() -> set[str]:
    from checkout_server.plugin.manager import collect_providers, make_plugin_manager

    saved = os.environ.pop("CHECKOUT_PLUGINS", None)
    try:
        payment, shipping = collect_providers(make_plugin_manager())
    finally:
        if saved is not None:
            os.environ["CHECKOUT_PLUGINS"] = saved
    return (DEMO_PROVIDERS["payment"] - set(payment)) | (DEMO_PROVIDERS["shipping"] - set(shipping))


def start_demo(data_dir: Path, port: int, admin_token: str = "serve-test-admin") -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CHECKOUT_PLUGINS", "MONGODB_URI", "CHECKOUT_CONFIG", "PORT")}
    env.update(CHECKOUT_DATA_DIR=str(data_dir), CHECKOUT_ADMIN_TOKEN=admin_token, LOG_LEVEL="WARNING")
    exe = Path(sys.executable).with_name("checkout-server")
    cmd = ([str(exe)] if exe.exists() else
           [sys.executable, "-c", "import sys; from checkout_server.cli import main; sys.exit(main())"])
    # cwd without a config/ folder: --demo falls back to the packaged demo config.
    return subprocess.Popen(cmd + ["serve", "--demo", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=data_dir.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def read_demo(process: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    """The printed token and everything the demo printed (up to its pointer to the docs)."""
    lines: queue.Queue = queue.Queue()

    def pump():  # a thread, so a silent or dead process cannot hang the test
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    out = []
    token = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        out.append(line)
        if line.startswith("DEMO_TOKEN="):
            token = line.strip().split("=", 1)[1]
        if token and "docs/checkout.md" in line:
            return token, "".join(out)
    process.kill()
    raise AssertionError("serve --demo printed no token:\n" + "".join(out))


def stop_process(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
