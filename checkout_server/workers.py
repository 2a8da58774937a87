"""The `serve` parent process: forks the HTTP workers and keeps them and the database alive.

The parent binds the listening sockets and starts the embedded database (when there is no
`MONGODB_URI`), then forks the workers before any event loop, database client or plugin
instance exists; each worker builds its own (cli.serve_forever). The parent never runs an
event loop: it is a plain loop that

- forwards SIGTERM/SIGINT (drain and stop) and SIGHUP (reload the config) to every worker;
- replaces a worker that dies (giving up after several quick deaths in a row);
- supervises the embedded database (storage.embedded.EmbeddedSupervisor) and exits non-zero
  when it cannot be brought back;
- stops the database last, once every worker has drained and exited.

Workers die with the parent (PR_SET_PDEATHSIG on Linux), as the database does, so a killed
service leaves nothing running behind it.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from checkout_server.storage.embedded import (
    EmbeddedGaveUp,
    EmbeddedMongo,
    EmbeddedSupervisor,
)

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
# A worker that dies sooner than this after its start counts as a crash loop.
QUICK_DEATH_SECONDS = 10.0
MAX_QUICK_DEATHS = 5
# The status a worker exits with when its config or a plugin is wrong (as `serve` itself).
USAGE_ERROR = 2


def worker_count(value: str) -> int:
    """`--workers`: a positive number, or 0 / `auto` for one per available core."""
    if value.strip().lower() == "auto" or value.strip() == "0":
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            return os.cpu_count() or 1
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        import argparse

        raise argparse.ArgumentTypeError(f"{value!r}: use a positive number, 0 or auto (one per core)")
    return count


@dataclass
class WorkerContext:
    """What a worker gets from the parent (inherited through fork, nothing else shared)."""

    index: int
    first_start: bool  # the first worker of this run: it seeds and prints the demo
    uri: str
    sockets: list[socket.socket]
    embedded: EmbeddedMongo | None
    stop_requested: bool = False  # a SIGTERM that arrived before the worker's event loop
    # What the first worker told the parent when it was ready (the demo's customer token, so
    # every worker's storefront shows it); empty in the first worker itself.
    shared: dict = field(default_factory=dict)
    _ready_fd: int | None = field(default=None, repr=False)

    def ready(self, **shared: str) -> None:
        """Tell the parent this worker is serving; the first worker's `shared` reaches the others."""
        if self._ready_fd is not None:
            os.write(self._ready_fd, json.dumps(shared).encode() + b"\n")
            os.close(self._ready_fd)
            self._ready_fd = None

    @property
    def database_restarts(self) -> int:
        """How often the parent restarted the embedded database (0 with MONGODB_URI)."""
        return self.embedded.restarts if self.embedded is not None else 0


@dataclass
class _Worker:
    index: int
    pid: int
    started: float
    ready_fd: int


class ProcessSupervisor:
    """Runs `count` workers (`run_worker(context) -> exit status`) until told to stop."""

    def __init__(self, count: int, uri: str, sockets: list[socket.socket],
                 embedded: EmbeddedMongo | None, run_worker: Callable[[WorkerContext], int]):
        self.count = count
        self.uri = uri
        self.sockets = sockets
        self.embedded = embedded
        self.run_worker = run_worker
        self.database = EmbeddedSupervisor(embedded) if embedded is not None else None
        # Hooks for metrics: each worker's pid once it has exited, and the end of the run.
        # The database's restarts: `self.database.on_restart` (and `embedded.restarts`).
        self.on_worker_exit: list[Callable[[int], None]] = []
        self.on_stop: list[Callable[[], None]] = []
        self.workers: dict[int, _Worker] = {}
        self._signals: list[int] = []
        self._quick_deaths = 0
        self._started_once = False
        self.shared: dict = {}

    # -- the parent's loop
    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        try:
            status = self._start_first()
            if status is None:
                self._spawn_rest()
                status = self._loop()
            return status
        finally:
            self._close_sockets()
            if self.embedded is not None:
                self.embedded.stop()
            for callback in self.on_stop:
                callback()

    def _on_signal(self, signum, frame) -> None:
        self._signals.append(signum)

    def _start_first(self) -> int | None:
        """Fork worker 0 and wait until it serves; its failure to start is the service's."""
        worker = self._spawn(0)
        while True:
            if self._stop_requested():
                return self._stop_all()
            readable, _, _ = select.select([worker.ready_fd], [], [], POLL_SECONDS)
            if readable and self._read_ready(worker):
                return None
            status = self._reap(worker)
            if status == 0:  # told to stop while starting (a signal to the process group)
                return self._stop_all()
            if status is not None:
                # A config or plugin error was printed by the worker: the service's exit status.
                return self._stop_all(status=USAGE_ERROR if status == USAGE_ERROR else 1)
            if self._check_database() is not None:
                return self._stop_all(status=1)

    def _read_ready(self, worker: _Worker) -> bool:
        """Whether the worker said it is ready (False: it closed the pipe, it died)."""
        message = b""
        while not message.endswith(b"\n"):
            chunk = os.read(worker.ready_fd, 65536)
            if not chunk:
                return False
            message += chunk
        self.shared = json.loads(message)
        return True

    def _spawn_rest(self) -> None:
        for index in range(1, self.count):
            self._spawn(index)

    def _loop(self) -> int:
        while True:
            time.sleep(POLL_SECONDS)
            if self._stop_requested():
                return self._stop_all()
            if self._check_database() is not None:
                return self._stop_all(status=1)
            for worker in list(self.workers.values()):
                status = self._reap(worker)
                if status is None:
                    continue
                lived = time.monotonic() - worker.started
                self._quick_deaths = self._quick_deaths + 1 if lived < QUICK_DEATH_SECONDS else 0
                if self._quick_deaths >= MAX_QUICK_DEATHS:
                    log.error("worker %d (pid %d) exited with %s: %d workers died within %ss of their "
                              "start in a row: stopping", worker.index, worker.pid, _describe(status),
                              self._quick_deaths, QUICK_DEATH_SECONDS)
                    return self._stop_all(status=1)
                log.error("worker %d (pid %d) exited with %s: starting a new one", worker.index,
                          worker.pid, _describe(status))
                if lived < QUICK_DEATH_SECONDS:
                    time.sleep(1.0)  # not a tight fork loop when something is persistently wrong
                self._spawn(worker.index)

    def _stop_requested(self) -> bool:
        while self._signals:
            signum = self._signals.pop(0)
            if signum == signal.SIGHUP:
                log.info("SIGHUP: reloading the config in %d workers", len(self.workers))
                self._signal_workers(signal.SIGHUP)
            else:
                return True
        return False

    def _check_database(self) -> int | None:
        """1 when the embedded database is gone for good, else None (restarting it if needed)."""
        if self.database is None:
            return None
        try:
            self.database.check()
        except EmbeddedGaveUp as exc:
            log.critical("%s: stopping the service", exc)
            return 1
        return None

    def _stop_all(self, status: int = 0) -> int:
        """Let every worker drain and exit (the database stays up meanwhile); their status."""
        log.info("stopping: draining workers (%d)", len(self.workers))
        # Closed here first, so that once the workers close theirs nobody can connect.
        self._close_sockets()
        self._signal_workers(signal.SIGTERM)
        while self.workers:
            for worker in list(self.workers.values()):
                code = self._reap(worker)
                if code is not None and code != 0:
                    log.error("worker %d (pid %d) exited with %s while stopping", worker.index,
                              worker.pid, _describe(code))
                    status = status or 1
            if self.workers:
                time.sleep(POLL_SECONDS)
                if status == 0 and self._check_database() is not None:
                    status = 1
                self._signals.clear()  # already stopping; a second SIGTERM changes nothing
        log.info("stopped")
        return status

    # -- workers
    def _spawn(self, index: int) -> _Worker:
        read_fd, write_fd = os.pipe()
        first_start = not self._started_once
        self._started_once = True
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_fd)
            status = 1
            try:
                context = WorkerContext(index, first_start and index == 0, self.uri, self.sockets,
                                        self.embedded, shared=dict(self.shared), _ready_fd=write_fd)
                self._become_worker(parent, context)
                status = self.run_worker(context)
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        os.close(write_fd)
        worker = _Worker(index, pid, time.monotonic(), read_fd)
        self.workers[index] = worker
        log.info("worker %d started (pid %d)", index, pid)
        return worker

    def _become_worker(self, parent: int, context: WorkerContext) -> None:
        def early(signum, frame):
            if signum != signal.SIGHUP:
                context.stop_requested = True

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, early)
        _die_with_parent(parent)
        if self.embedded is not None:
            self.embedded.lock.forget_in_child()  # the parent's to hold and to release
        self.workers = {}

    def _reap(self, worker: _Worker) -> int | None:
        """The worker's exit status once it has exited (and forget it), else None."""
        try:
            pid, wait_status = os.waitpid(worker.pid, os.WNOHANG)
        except ChildProcessError:
            pid, wait_status = worker.pid, 1 << 8
        if pid == 0:
            return None
        os.close(worker.ready_fd)
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        for callback in self.on_worker_exit:
            callback(worker.pid)
        return os.waitstatus_to_exitcode(wait_status)

    def _signal_workers(self, signum: int) -> None:
        for worker in self.workers.values():
            try:
                os.kill(worker.pid, signum)
            except ProcessLookupError:
                pass

    def _close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()


def _describe(status: int) -> str:
    if status < 0:
        return f"signal {signal.Signals(-status).name}"
    return f"status {status}"


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this worker when the parent dies, as the embedded database is."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
