"""`serve --workers N`: forked workers, signals reach each, a dead one is replaced."""

import argparse
import os
import signal
import sys
import time

import pytest
from live import DEMO_METHODS, Service, free_port, request, site_config, worker_pids

from checkout_server.workers import worker_count

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_worker_count():
    cores = len(os.sched_getaffinity(0))
    assert worker_count("auto") == worker_count("0") == worker_count("AUTO") == cores
    assert worker_count("3") == 3
    for bad in ("-1", "two", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            worker_count(bad)


def _wait(condition, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def test_two_workers_share_the_port_reload_and_stop_together_and_a_dead_one_is_replaced(tmp_path):
    pytest.importorskip("checkout_shipping_basic", reason="pip install -r requirements.txt")
    port = free_port()
    service = Service(tmp_path, port=port, workers=2)
    try:
        service.start()
        first = _wait(lambda: _n_workers(service, 2), "two workers")
        _wait(lambda: service.log().count(") serving") == 2, "both workers to listen")
        # One database for both, started by the parent.
        assert service.database_pid() not in first
        assert (service.data_dir / "checkout-server.lock").read_text().split() == [str(service.process.pid)]

        # SIGHUP to the parent reloads the config in every worker.
        service.config_path.write_text(site_config(port, DEMO_METHODS.replace('title = "Standard"',
                                                                               'title = "Reloaded"')))
        service.signal(signal.SIGHUP)
        _wait(lambda: service.log().count("config reloaded") == 2, "both workers to reload")

        # A worker that dies is replaced; the other one serves meanwhile.
        os.kill(first[0], signal.SIGKILL)
        replaced = _wait(lambda: (pids := _n_workers(service, 2)) and first[0] not in pids and pids,
                         "a new worker")
        assert first[1] in replaced
        assert "exited with signal SIGKILL: starting a new one" in service.log()
        for _ in range(20):  # whichever worker answers, it has the reloaded methods
            status, _, body = request(port, "GET", "/api/admin/plugins", token="live-admin")
            assert status == 200
            assert [m["title"] for m in body["methods"] if m["kind"] == "shipping"] == ["Reloaded"]

        assert service.stop() == 0
        assert not any(_alive(pid) for pid in replaced)
        assert "Traceback" not in service.log()
    finally:
        service.kill()


def test_a_killed_parent_takes_its_workers_and_database_with_it(tmp_path):
    pytest.importorskip("checkout_shipping_basic", reason="pip install -r requirements.txt")
    service = Service(tmp_path, workers=2)
    try:
        service.start()
        workers = _wait(lambda: _n_workers(service, 2), "two workers")
        database = service.database_pid()
        service.process.kill()
        service.process.wait(10)
        _wait(lambda: not any(_alive(pid) for pid in [*workers, database]), "workers and database to die", 10)
        # And the data directory is free at once for the next start.
        service.start()
        assert request(service.port, "GET", "/health")[0] == 200
        assert service.stop() == 0
    finally:
        service.kill()


def _n_workers(service, count: int) -> list[int] | None:
    pids = worker_pids(service)
    return pids if len(pids) == count else None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_every_worker_of_a_demo_serves_the_demo_token(tmp_path):
    """The first worker seeds the demo; the others (and replacements) show its token too."""
    for name in ("checkout_cod", "checkout_sandbox", "checkout_shipping_basic"):
        pytest.importorskip(name, reason="pip install -r requirements.txt")
    service = Service(tmp_path, workers=2, extra_args=["--demo"])
    try:
        service.start()
        _wait(lambda: service.log().count(") serving") == 2, "both workers to serve")
        token = _wait(lambda: next((line.split("=", 1)[1] for line in service.log().splitlines()
                                    if line.startswith("DEMO_TOKEN=")), None), "the demo's token")
        first = int(service.log().split("worker 0 (pid ")[1].split(")")[0])
        # With the seeding worker stopped, the other one accepts every connection.
        os.kill(first, signal.SIGSTOP)
        try:
            status, _, page = request(service.port, "GET", "/", timeout=10)
        finally:
            os.kill(first, signal.SIGCONT)
        assert status == 200 and f'<meta name="demo-token" content="{token}">' in page
        assert service.stop() == 0
    finally:
        service.kill()
