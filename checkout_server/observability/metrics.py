"""Prometheus metrics: what the service counts, and GET /metrics's exposition.

One process: the metrics live in memory. Several worker processes (`serve --workers N`):
the parent calls `prepare_multiprocess()` before it forks, so every worker writes its
samples to files in one directory (prometheus-client's multiprocess mode) and whichever
worker answers GET /metrics reports the sum over all of them; the parent calls
`worker_exited(pid)` for each worker that dies and `cleanup_multiprocess()` when it stops.

Labels are bounded: a route is its template (`/api/shop/orders/{order_key}`), a payment
method is a configured id or "unknown", a provider a provider name. Every metric is built
on first use (see `_metrics`), so that multiprocess mode, chosen later in the parent, still
applies to all of them. Each metric is documented, with an alert, in docs/operations.md.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from functools import cache
from types import SimpleNamespace

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    multiprocess,
    values,
)

from checkout_server.observability import logs

__all__ = [
    "CONTENT_TYPE", "checkout_finished", "checkout_refused", "cleanup_multiprocess", "embedded_database_restarted",
    "exposition", "gateway_call", "hold_expired", "prepare_multiprocess", "reconciler_acted", "request_finished",
    "settlement", "stock_refused", "worker_exited",
]

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds. HTTP answers are mostly milliseconds; a checkout may wait on its gateway.
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 90.0)
_GATEWAY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0)


@cache
def _metrics() -> SimpleNamespace:
    """The metrics, made once per process on first use (after any `prepare_multiprocess`)."""
    return SimpleNamespace(
        requests=Counter("checkout_http_requests_total", "HTTP requests answered, by route, method and status.",
                         ["route", "method", "status"]),
        request_seconds=Histogram("checkout_http_request_duration_seconds",
                                  "Time to answer an HTTP request, by route, method and status.",
                                  ["route", "method", "status"], buckets=_HTTP_BUCKETS),
        checkouts=Counter("checkout_checkouts_total",
                          "Checkouts (POST /api/shop/checkout/cart) by outcome, payment method and flow.",
                          ["outcome", "payment_method", "flow"]),
        refusals=Counter("checkout_checkout_refusals_total",
                         "Checkouts refused with a 400, once per failing rule (a checkout can fail several).",
                         ["rule"]),
        stock_refusals=Counter("checkout_stock_refusals_total",
                               "Cart lines refused for want of stock, at validation or at reservation.",
                               ["stage"]),
        settlements=Counter("checkout_settlements_total",
                            "Settle attempts on an order's payment, by result and by what asked.",
                            ["result", "source"]),
        gateway_calls=Counter("checkout_gateway_calls_total",
                              "Calls to payment providers, by provider, operation and outcome.",
                              ["provider", "operation", "outcome"]),
        gateway_seconds=Histogram("checkout_gateway_call_duration_seconds",
                                  "Time a payment provider took to answer, by provider and operation.",
                                  ["provider", "operation"], buckets=_GATEWAY_BUCKETS),
        holds_expired=Counter("checkout_holds_expired_total",
                              "Orders whose hold expired, by what the sweeper did with them.", ["outcome"]),
        reconciler=Counter("checkout_reconciler_actions_total",
                           "What the stock reconciler finished or undid, by action.", ["action"]),
        embedded_restarts=Counter("checkout_embedded_database_restarts_total",
                                  "Restarts of the embedded database after it died.", ["reason"]),
    )


# ---- what the service reports

def request_finished(route: str, method: str, status: int, seconds: float) -> None:
    m = _metrics()
    labels = (route, method, str(status))
    m.requests.labels(*labels).inc()
    m.request_seconds.labels(*labels).observe(seconds)


def checkout_finished(outcome: str, payment_method: str = "unknown", flow: str = "unknown") -> None:
    """outcome: order, next_step, refused, invalid, 409, 503 or 500."""
    _metrics().checkouts.labels(outcome, payment_method, flow).inc()


def checkout_refused(rules) -> None:
    for rule in rules:
        _metrics().refusals.labels(rule).inc()


def stock_refused(lines: int = 1, stage: str = "validation") -> None:
    """stage: "validation" (the stock rule) or "reservation" (sold out while reserving)."""
    _metrics().stock_refusals.labels(stage).inc(lines)


def settlement(result: str, source: str) -> None:
    """result: paid, failed, pending or unchanged; source: return, notification or expiry."""
    _metrics().settlements.labels(result, source).inc()


def settlement_source() -> str:
    """What asked for a settlement: the request being served says, else the hold-expiry sweep."""
    context = logs.current()
    route = context.route if context is not None else None
    if route is None:
        return "expiry"
    if "/checkout/return/" in route:
        return "return"
    if "/checkout/notify/" in route:
        return "notification"
    return "other"


def counted_settlement(settle):
    """Decorates the one settle function: each call counted by its result and source."""

    @functools.wraps(settle)
    async def counted(*args, **kwargs):
        outcome = await settle(*args, **kwargs)
        result = outcome.result if outcome.changed or outcome.result == "pending" else "unchanged"
        settlement(result, settlement_source())
        return outcome

    return counted


def gateway_call_observed(provider: str, operation: str, outcome: str, seconds: float) -> None:
    m = _metrics()
    m.gateway_calls.labels(provider, operation, outcome).inc()
    m.gateway_seconds.labels(provider, operation).observe(seconds)


@contextmanager
def gateway_call(provider: str, operation: str, classify):
    """Time a provider call and count it by the outcome `classify(exception or None)` names."""
    started = time.perf_counter()
    try:
        yield
    except BaseException as exc:
        gateway_call_observed(provider, operation, classify(exc), time.perf_counter() - started)
        raise
    gateway_call_observed(provider, operation, classify(None), time.perf_counter() - started)


def hold_expired(outcome: str, count: int = 1) -> None:
    """outcome: cancelled, paid or deferred (kept on hold, asked again next sweep)."""
    if count:
        _metrics().holds_expired.labels(outcome).inc(count)


def reconciler_acted(action: str, count: int = 1) -> None:
    """action: interrupted, released, committed or orphans."""
    if count:
        _metrics().reconciler.labels(action).inc(count)


def embedded_database_restarted(reason: str = "exited") -> None:
    _metrics().embedded_restarts.labels(reason).inc()


# ---- several processes

def prepare_multiprocess(directory: str | None = None) -> str:
    """Set up multiprocess mode before forking workers; returns the (emptied) directory.

    `directory`: the operator's `PROMETHEUS_MULTIPROC_DIR` if set, else a new temporary one
    (removed by `cleanup_multiprocess`). Files left by an earlier run are deleted: they
    would be counted again.
    """
    directory = directory or os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="checkout-metrics-")
    os.makedirs(directory, exist_ok=True)
    for stale in glob.glob(os.path.join(directory, "*.db")):
        os.remove(stale)
    os.environ[MULTIPROC_ENV] = directory
    # prometheus-client picks its value class when it is first imported, and this module
    # imports it before the parent knows it will fork: pick again now. No metric exists yet
    # (`_metrics` builds them on first use), so all of them get file-backed values.
    values.ValueClass = values.get_value_class()
    if _metrics.cache_info().currsize:  # built in memory already: build them again on files
        for collector in vars(_metrics()).values():
            prometheus_client.REGISTRY.unregister(collector)
        _metrics.cache_clear()
    return directory


def worker_exited(pid: int) -> None:
    """The parent's clean-up for a worker that died (its live gauges no longer count)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)


def cleanup_multiprocess(directory: str) -> None:
    """Remove a directory `prepare_multiprocess` created (the parent, after its workers stopped)."""
    if directory.startswith(os.path.join(tempfile.gettempdir(), "checkout-metrics-")):
        shutil.rmtree(directory, ignore_errors=True)
    os.environ.pop(MULTIPROC_ENV, None)


def exposition() -> bytes:
    """The text GET /metrics answers: this process's metrics, or all workers' together."""
    _metrics()  # every metric appears, at zero, from the first scrape on
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return prometheus_client.generate_latest(registry)
    return prometheus_client.generate_latest(prometheus_client.REGISTRY)
