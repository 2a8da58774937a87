"""A real `checkout-server serve` process on loopback, for the tests that need one whole.

    with LiveService(tmp_path, demo=True, env={"LOG_FORMAT": "json"}) as service:
        service.get("/health")
        service.demo_token, service.logs()
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

from checkout_server.storage.embedded import free_port

ADMIN_TOKEN = "live-admin-token-0c5d2f8e9a41b7"


class LiveService:
    def __init__(self, workdir: Path, *, demo: bool = True, config: Path | None = None,
                 env: dict | None = None, admin_token: str = ADMIN_TOKEN, start_timeout: float = 60,
                 args: tuple[str, ...] = ()):
        self.workdir = Path(workdir)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.admin_token = admin_token
        self.demo = demo
        self.config = config
        self.extra_env = env or {}
        self.start_timeout = start_timeout
        self.args = tuple(args)
        self.demo_token: str | None = None
        self.process: subprocess.Popen | None = None
        self._stdout: list[str] = []
        self._stderr: list[str] = []

    def __enter__(self) -> Self:
        env = {k: v for k, v in os.environ.items()
               if k not in ("CHECKOUT_PLUGINS", "MONGODB_URI", "CHECKOUT_CONFIG", "PORT", "LOG_FORMAT")}
        env.update({"CHECKOUT_DATA_DIR": str(self.workdir / "var"), "CHECKOUT_ADMIN_TOKEN": self.admin_token,
                    "LOG_LEVEL": "INFO", **self.extra_env})
        exe = Path(sys.executable).with_name("checkout-server")
        cmd = ([str(exe)] if exe.exists() else
               [sys.executable, "-c", "import sys; from checkout_server.cli import main; sys.exit(main())"])
        cmd += ["serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.demo:
            cmd.append("--demo")
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        cmd += list(self.args)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(cmd, cwd=self.workdir, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        # Threads drain both pipes, so a chatty or silent process never blocks or hangs a test.
        ready = threading.Event()
        threading.Thread(target=self._pump, args=(self.process.stdout, self._stdout, ready), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.process.stderr, self._stderr, None), daemon=True).start()
        try:
            self._wait_until_ready(ready)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _pump(self, pipe, sink: list[str], ready: threading.Event | None) -> None:
        for line in pipe:
            sink.append(line)
            if line.startswith("DEMO_TOKEN="):
                self.demo_token = line.strip().split("=", 1)[1]
                if ready is not None:
                    ready.set()

    def _wait_until_ready(self, ready: threading.Event) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.logs()}")
            if self.demo and not ready.wait(0.1):
                continue
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"serve did not become healthy in {self.start_timeout} s:\n{self.logs()}")

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)

    def logs(self) -> str:
        """Everything the service logged (stderr) so far."""
        return "".join(self._stderr)

    def printed(self) -> str:
        return "".join(self._stdout)

    def request(self, method: str, path: str, body=None, token: str | None = None,
                headers: dict | None = None) -> tuple[int, dict | None, dict]:
        data = json.dumps(body).encode() if body is not None else (b"" if method in ("POST", "PUT", "PATCH") else None)
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        if token:
            request.add_header("Authorization", f"Token {token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw, status, answer_headers = response.read(), response.status, dict(response.headers)
        except urllib.error.HTTPError as exc:
            raw, status, answer_headers = exc.read(), exc.code, dict(exc.headers)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return status, parsed, answer_headers
