"""The embedded database: an nx-27017 child process on loopback.

nx-27017 speaks the MongoDB wire protocol on top of SQLite, so the zero-install default runs
the same driver code path as production. The child gets a free port and `--data-dir` under
the data directory. The service owns the directory through an OS lock on
`checkout-server.lock` (`fcntl.flock`, held for the service's life and released by the kernel
however the service ends), so two services can never share it; a pid file lets the next
start stop a server that a killed run left behind (off Linux, where it does not die with
its parent).
"""

import fcntl
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)


# Run as `python -c _DIE_WITH_PARENT <parent pid> <command...>`: ask Linux to SIGKILL this
# process when its parent dies (PR_SET_PDEATHSIG, kept across exec), then exec the command.
# SIGKILL, not SIGTERM: nx-27017 can take many seconds to exit on SIGTERM under load, and
# SQLite keeps its data safe either way.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"
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
    """Another running service owns this data directory."""


class DataDirLock:
    """An exclusive `fcntl.flock` on `<data dir>/checkout-server.lock`, held until released.

    The kernel drops it when the holder exits, however it exits, so a killed service never
    leaves a stale lock. The loser of a race reads the lock file and changes nothing; the
    winner writes its pid into it for that message.
    """

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / "checkout-server.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # no O_TRUNC: it may be the winner's
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise DataDirInUse(
                f"the data directory {self.path.parent} is in use by another checkout-server"
                f"{f' (pid {owner})' if owner.isdigit() else ''}; stop it, or give this one its own "
                f"CHECKOUT_DATA_DIR") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def forget_in_child(self) -> None:
        """In a forked worker: close the inherited descriptor (the parent keeps the lock)."""
        self.release()


class EmbeddedMongo:
    """Start, wait for, restart and stop one nx-27017 server whose data lives in `data_dir`.

    `restarts` counts the restarts after the child died; it lives in shared memory, so
    worker processes forked after the start read the parent's count (for metrics).
    """

    def __init__(self, data_dir: str | os.PathLike, host: str = "127.0.0.1", port: int | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port
        self.process: subprocess.Popen | None = None
        self.lock = DataDirLock(self.data_dir)
        self._restarts = multiprocessing.RawValue("q", 0)

    @property
    def db_dir(self) -> Path:
        return self.data_dir / "db"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "nx-27017.pid"

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    @property
    def restarts(self) -> int:
        return self._restarts.value

    def _stop_leftover(self) -> None:
        """Stop a server that a killed run left behind on the same data.

        Called with the data directory's lock held: whoever started that server is gone.
        """
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        if _alive(pid) and _is_nx_process(pid):
            log.warning("stopping embedded database left behind by an earlier run (pid %s)", pid)
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    def start(self, timeout: float = 30.0) -> str:
        """Take the data directory, start the server and wait until it listens; returns its URI."""
        if not self.lock.held:
            self.lock.acquire()  # first: a loser must not touch anything of the winner's
        try:
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
        except BaseException:
            self.lock.release()
            raise

    def exit_code(self) -> int | None:
        """The child's exit status if it died on its own (None while it runs or when stopped)."""
        if self.process is None:
            return None
        return self.process.poll()

    def restart(self, timeout: float = 30.0) -> None:
        """Start the server again on the same data and port (clients reconnect by themselves)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
        self._start_once(timeout)
        self._restarts.value += 1

    def _start_once(self, timeout: float) -> str:
        log_file = self.data_dir / "nx-27017.log"
        daemon_pid_file = self.data_dir / "nx-27017.daemon.pid"
        # nx-27017 refuses to start while its own pid file names a live process; a killed
        # server leaves it behind, and its pid may since belong to anyone. Ours to remove:
        # the data directory's lock is held.
        daemon_pid_file.unlink(missing_ok=True)
        cmd = _nx_command() + [
            "--data-dir", str(self.db_dir),
            "--host", self.host,
            "--port", str(self.port),
            "--log-file", str(log_file),
            "--pid-file", str(daemon_pid_file),
        ]
        if sys.platform.startswith("linux"):
            # Dies with the service even when the service is SIGKILLed (no orphan server).
            # Linux ties this to the thread that starts the child: always the main thread here.
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
            if self._answers():
                return
            time.sleep(0.05)
        self._stop_child()
        raise EmbeddedExited(f"embedded database did not listen on port {self.port} in {timeout}s")

    def _answers(self) -> bool:
        """Whether a MongoDB server answers a ping on our port (not merely something listening
        there: the port of a dead server may have been taken by another program)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                pass
        except OSError:
            return False
        from pymongo import MongoClient

        client = MongoClient(self.uri, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000, socketTimeoutMS=1000)
        try:
            client.admin.command("ping")
            return True
        except Exception:  # noqa: BLE001 -- anything but an answer means "not ready"
            return False
        finally:
            client.close()

    def _stop_child(self, timeout: float = 10.0) -> None:
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

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and give the data directory up."""
        try:
            self._stop_child(timeout)
        finally:
            self.lock.release()


class EmbeddedSupervisor:
    """Notices a dead embedded server and restarts it, with bounded retries and backoff.

    `check()` is called every `POLL_SECONDS` by the process that started the server. A
    restart that fails, or a server that dies again within `STABLE_SECONDS`, counts as a
    further attempt; after `MAX_ATTEMPTS` in a row `check()` raises EmbeddedGaveUp, and the
    service exits non-zero so its process manager restarts everything. `on_restart`
    callbacks (metrics) run after each successful restart.
    """

    POLL_SECONDS = 0.5
    MAX_ATTEMPTS = 5
    BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)
    STABLE_SECONDS = 60.0

    def __init__(self, embedded: EmbeddedMongo, clock=time.monotonic):
        self.embedded = embedded
        self.clock = clock
        self.on_restart: list = []
        self._attempts = 0
        self._last_start = clock()
        self._retry_at: float | None = None

    def check(self) -> bool:
        """Notice a death, or restart when its backoff has passed; True after a restart."""
        now = self.clock()
        if self._retry_at is None:
            code = self.embedded.exit_code()
            if code is None:
                return False
            if now - self._last_start >= self.STABLE_SECONDS:
                self._attempts = 0  # it ran well for a while: a fresh budget
            self._schedule(now, f"embedded database (pid {self.embedded.process.pid}) exited with "
                                f"status {code}: restarting it on {self.embedded.db_dir}")
            return False
        if now < self._retry_at:
            return False
        self._retry_at = None
        try:
            self.embedded.restart()
        except EmbeddedExited as exc:
            self._schedule(self.clock(), f"embedded database restart failed ({str(exc).splitlines()[0]})")
            return False
        self._last_start = self.clock()
        log.warning("embedded database restarted (pid %s, restart %d)", self.embedded.process.pid,
                    self.embedded.restarts)
        for callback in self.on_restart:
            callback()
        return True

    def _schedule(self, now: float, what: str) -> None:
        if self._attempts >= self.MAX_ATTEMPTS:
            raise EmbeddedGaveUp(f"{what}; {self._attempts} restarts failed in a row: giving up "
                                 f"(see {self.embedded.data_dir / 'nx-27017.log'})")
        delay = self.BACKOFF_SECONDS[min(self._attempts, len(self.BACKOFF_SECONDS) - 1)]
        self._attempts += 1
        log.error("%s in %ss (attempt %d of %d); requests get 503 meanwhile", what, delay,
                  self._attempts, self.MAX_ATTEMPTS)
        self._retry_at = now + delay


class EmbeddedGaveUp(RuntimeError):
    """The embedded server could not be restarted within the allowed attempts."""
