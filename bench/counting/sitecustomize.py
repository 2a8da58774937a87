"""Bench only: count the service's database commands, per process, by command name.

bench/run.py puts this folder on the service's PYTHONPATH with BENCH_COUNTS_DIR set, so
every Python process of the service (the parent and each worker, forked or started anew)
registers one pymongo command listener before any client exists. On SIGUSR1 a process
writes its running totals to BENCH_COUNTS_DIR/<pid>.json; the bench takes differences
between phases. Without BENCH_COUNTS_DIR this does nothing.
"""

import os

_DIR = os.environ.get("BENCH_COUNTS_DIR")

if _DIR:
    import json
    import signal

    from pymongo import monitoring

    _counts: dict[str, int] = {}

    class _CommandCounter(monitoring.CommandListener):
        def started(self, event):
            _counts[event.command_name] = _counts.get(event.command_name, 0) + 1

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    def _dump(_signum, _frame):
        path = os.path.join(_DIR, f"{os.getpid()}.json")
        with open(path + ".tmp", "w") as out:
            json.dump(_counts, out)
        os.replace(path + ".tmp", path)  # the bench never reads half a file

    monitoring.register(_CommandCounter())
    signal.signal(signal.SIGUSR1, _dump)
