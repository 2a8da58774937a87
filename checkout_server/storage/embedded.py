"""The embedded database: an nx-27017 child process on loopback.

nx-27017 speaks the MongoDB wire protocol on top of SQLite, so the zero-install default runs
the same driver code path as production. The child gets a free port and `--data-dir` under
the data directory; a pid file there lets the next start stop a server that a killed run
left behind.
"""

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)


# Run as `python -c _DIE_WITH_PARENT <parent pid> <command...>`: ask Linux to SIGTERM this
# process when its parent dies (PR_SET_PDEATHSIG, kept across exec), then exec the command.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)  # the parent died before prctl took effect\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _nx_command() -> list[str]:
    # The one installed beside this Python first: PATH may lead to another environment's.
    candidate = Path(sys.executable).with_name("nx-27017")
    exe = str(candidate) if candidate.exists() else shutil.which("nx-27017")
    if exe is None:
        raise RuntimeError("nx-27017 is not installed: pip install nx-27017")
    return [exe]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) answers signal 0 but is gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _is_nx_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"nx-27017" in cmdline or b"nx_27017" in cmdline


class EmbeddedExited(RuntimeError):
    """The embedded server exited before it listened."""


class DataDirInUse(RuntimeError):
    """Another running service owns the embedded database of this data directory."""


class EmbeddedMongo:
    """Start, wait for and stop one nx-27017 server whose data lives in `data_dir`."""

    def __init__(self, data_dir: str | os.PathLike, host: str = "127.0.0.1", port: int | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port
        self.process: subprocess.Popen | None = None

    @property
    def db_dir(self) -> Path:
        return self.data_dir / "db"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "nx-27017.pid"

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    def _stop_leftover(self) -> None:
        """Stop a server that a killed run left behind on the same data.

        The pid file holds the database's pid and its owner's (the service that started
        it). A database whose owner still runs is in use: refuse rather than pull it away.
        """
        try:
            pids = self.pid_file.read_text().split()
            pid = int(pids[0])
            owner = int(pids[1]) if len(pids) > 1 else None
        except (OSError, ValueError, IndexError):
            return
        if _alive(pid) and _is_nx_process(pid):
            if owner is not None and owner != os.getpid() and _alive(owner):
                raise DataDirInUse(
                    f"the data directory {self.data_dir} is in use by another checkout-server "
                    f"(pid {owner}); stop it, or give this one its own CHECKOUT_DATA_DIR")
            log.warning("stopping embedded database left behind by an earlier run (pid %s)", pid)
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)

    def start(self, timeout: float = 30.0) -> str:
        """Start the server and wait until it listens; returns its URI."""
        self.db_dir.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        fixed_port = self.port is not None
        # A free port can be taken by someone else before the child binds it: try another.
        for attempt in range(1 if fixed_port else 3):
            if not fixed_port:
                self.port = free_port(self.host)
            try:
                return self._start_once(timeout)
            except EmbeddedExited:
                if fixed_port or attempt == 2:
                    raise
                log.warning("embedded database exited at start on port %s: retrying", self.port)
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> str:
        log_file = self.data_dir / "nx-27017.log"
        cmd = _nx_command() + [
            "--data-dir", str(self.db_dir),
            "--host", self.host,
            "--port", str(self.port),
            "--log-file", str(log_file),
            "--pid-file", str(self.data_dir / "nx-27017.daemon.pid"),
        ]
        if sys.platform.startswith("linux"):
            # Dies with the service even when the service is SIGKILLed (no orphan server).
            cmd = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *cmd]
        # Own session: a Ctrl-C in the terminal reaches the service, which stops us in order.
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self.pid_file.write_text(f"{self.process.pid} {os.getpid()}\n")
        self._wait_ready(timeout, log_file)
        log.info("embedded database on %s:%s, data in %s", self.host, self.port, self.db_dir)
        return self.uri

    def _wait_ready(self, timeout: float, log_file: Path) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = log_file.read_text()[-2000:] if log_file.exists() else ""
                code = self.process.returncode
                self.process = None
                self.pid_file.unlink(missing_ok=True)
                raise EmbeddedExited(f"embedded database exited with {code}: {tail}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded database did not listen on port {self.port} in {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.pid_file.unlink(missing_ok=True)
