"""The embedded nx-27017 server: data survives a restart, a leftover server is recovered."""

import os
import signal
import subprocess
import sys
import time

import pytest

from checkout_server.storage import Storage
from checkout_server.storage.embedded import EmbeddedMongo, _alive


async def _storage(uri) -> Storage:
    storage = Storage.connect(uri, "checkout")
    await storage.create_indexes()
    return storage


@pytest.mark.gen_test(timeout=120)
async def test_data_survives_a_restart_on_the_same_data_dir(tmp_path):
    server = EmbeddedMongo(tmp_path)
    storage = None
    try:
        storage = await _storage(server.start())
        mug = await storage.products.create({"name": "Mug", "price": 1200, "stock": 5})
        ada = await storage.customers.create("hash-ada", {"first_name": "Ada"})
        await storage.customers.add_to_cart(ada["_id"], mug["_id"], 2)
        assert await storage.products.reserve("ORD-2026-000001", {mug["_id"]: 3}) == 1
    finally:
        if storage is not None:
            await storage.close()
        server.stop()
    assert not server.pid_file.exists()

    again = EmbeddedMongo(tmp_path)
    try:
        storage = await _storage(again.start())
        assert (await storage.customers.by_token_hash("hash-ada"))["cart"] == {str(mug["_id"]): 2}
        product = await storage.products.get(mug["_id"])
        assert product["stock"] == 2 and product["holds"] == {"ORD-2026-000001": 3}
        # Sequences go on where they stopped: no id is handed out twice.
        assert (await storage.products.create({"name": "Pen", "price": 1, "stock": 1}))["_id"] == mug["_id"] + 1
    finally:
        await storage.close()
        again.stop()


@pytest.mark.gen_test(timeout=120)
async def test_a_server_left_behind_by_a_killed_run_is_stopped(tmp_path):
    killed_run = EmbeddedMongo(tmp_path)
    next_run = EmbeddedMongo(tmp_path)
    try:
        storage = await _storage(killed_run.start())
        await storage.products.create({"name": "Mug", "price": 1200, "stock": 5})
        await storage.close()
        leftover_pid = killed_run.process.pid
        # The service was SIGKILLed: the kernel dropped its lock, but nobody stopped its
        # database (off Linux it does not die with its parent), whose pid file stays.
        killed_run.lock.release()
        assert _alive(leftover_pid) and killed_run.pid_file.exists()

        storage = await _storage(next_run.start())
        try:
            killed_run.process.wait(10)  # reap it: it was stopped by next_run.start()
            assert not _alive(leftover_pid)
            assert (await storage.products.find_by_name("Mug"))["stock"] == 5
        finally:
            await storage.close()
    finally:
        next_run.stop()
        if killed_run.process is not None and killed_run.process.poll() is None:
            killed_run.process.kill()
            killed_run.process.wait()


def test_a_stale_pid_file_of_another_process_is_ignored(tmp_path):
    # The pid belongs to this test process, not to an nx-27017 server: it must not be killed.
    (tmp_path / "nx-27017.pid").write_text(f"{os.getpid()}\n")
    server = EmbeddedMongo(tmp_path)
    try:
        server.start()
        assert server.pid_file.read_text().split() == [str(server.process.pid), str(os.getpid())]
    finally:
        server.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_the_database_dies_with_a_killed_service(tmp_path):
    # A service killed with SIGKILL cannot stop its database: the database must follow it.
    script = (
        "import sys, time\n"
        "from checkout_server.storage.embedded import EmbeddedMongo\n"
        "server = EmbeddedMongo(sys.argv[1])\n"
        "server.start()\n"
        "print(server.process.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    service = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    db_pid = None
    try:
        db_pid = int(service.stdout.readline())
        assert _alive(db_pid)
        service.kill()
        service.wait(10)
        deadline = time.monotonic() + 10
        while _alive(db_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(db_pid)
    finally:
        service.kill()
        service.wait()
        service.stdout.close()
        if db_pid is not None and _alive(db_pid):
            os.kill(db_pid, signal.SIGKILL)


def test_a_second_owner_of_the_data_dir_is_refused_and_touches_nothing(tmp_path):
    """The data directory is taken with an OS lock: whoever comes second changes nothing."""
    from checkout_server.storage.embedded import DataDirInUse

    first = EmbeddedMongo(tmp_path)
    second = EmbeddedMongo(tmp_path)
    try:
        first.start()
        files = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}
        with pytest.raises(DataDirInUse, match=f"in use by another checkout-server \\(pid {os.getpid()}\\)"):
            second.start()
        assert second.process is None
        assert first.process.poll() is None  # the winner's database still runs
        assert {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()} == files
    finally:
        second.stop()
        first.stop()
    # Released on stop: the next owner gets it.
    third = EmbeddedMongo(tmp_path)
    try:
        third.start()
    finally:
        third.stop()
