"""Request ids on answers and log lines, the log formats, and GET /metrics's access modes."""

import io
import json
import logging

import pytest
import tornado.web

from checkout_server.observability import logs
from checkout_server.plugin import hookimpl
from checkout_server.testing import TestShop

PLUGIN_LOG = logging.getLogger("a_plugin")


class PlainPage(tornado.web.RequestHandler):
    """A plugin route that is not a BaseHandler, and logs with its own logger."""

    auth = "public"

    def get(self):
        PLUGIN_LOG.warning("plugin page served")
        self.write({"ok": True})


class PagePlugin:
    @hookimpl
    def register_routes(register):
        register(r"/plugin/page", PlainPage)


@pytest.fixture
def log_stream():
    """The service's log handler (as `serve` installs it), writing JSON lines to a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.RequestContextFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.mark.gen_test
async def test_a_sane_request_id_is_kept_and_anything_else_replaced(log_stream):
    async with TestShop(plugins=[PagePlugin]) as shop:
        r = await shop.request("GET", "/health", headers={"X-Request-Id": "lb-7f3a9c:01"})
        assert r.headers["X-Request-Id"] == "lb-7f3a9c:01"
        for bad in ("has spaces", "x" * 200, "<script>", "a\tb"):
            r = await shop.request("GET", "/health", headers={"X-Request-Id": bad})
            generated = r.headers["X-Request-Id"]
            assert generated != bad and len(generated) == 32 and int(generated, 16) >= 0
        # Every answer carries one, different for each request: 404s, 401s, plugin routes.
        ids = set()
        for path in ("/nope", "/api/shop/cart", "/plugin/page"):
            r = await shop.request("GET", path)
            ids.add(r.headers["X-Request-Id"])
        assert len(ids) == 3
    access = [line for line in lines(log_stream) if line["logger"] == "tornado.access"]
    assert {line["request_id"] for line in access} >= ids | {"lb-7f3a9c:01"}


@pytest.mark.gen_test
async def test_every_line_logged_while_serving_a_request_names_it(log_stream):
    async with TestShop(plugins=[PagePlugin]) as shop:
        p = await shop.product(price=1000, stock=5)
        c = await shop.customer(cart={p["_id"]: 1})
        r = await shop.request("GET", "/plugin/page", headers={"X-Request-Id": "plugin-req-1"})
        assert r.status == 200
        r = await c.request("GET", "/api/shop/orders?limit=5", headers={"X-Request-Id": "orders-req-1"})
        assert r.status == 200
    found = lines(log_stream)
    [plugin_line] = [line for line in found if line["logger"] == "a_plugin"]
    assert plugin_line["request_id"] == "plugin-req-1" and plugin_line["message"] == "plugin page served"
    assert plugin_line["route"] == "/plugin/page"
    [access] = [line for line in found if line.get("request_id") == "orders-req-1"]
    assert access["route"] == "/api/shop/orders" and access["status"] == 200
    assert access["customer_id"] == c.id and access["method"] == "GET"
    assert isinstance(access["duration_ms"], float)
    assert access["path"] == "/api/shop/orders" and "limit" not in access["message"]  # no query strings
    assert access["time"].endswith("Z") and access["level"] == "INFO"


def test_text_lines_stay_readable_and_name_the_request():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.TextFormatter())
    handler.addFilter(logs.RequestContextFilter())
    logger = logging.getLogger("test_text_lines")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("outside any request")
        import contextvars
        context = contextvars.Context()
        context.run(logs.start_request, "req-42")
        context.run(logger.warning, "order %s refused", "ORD-2026-000001")
    finally:
        logger.removeHandler(handler)
    first, second = stream.getvalue().splitlines()
    assert first.endswith(" WARNING test_text_lines: outside any request")
    assert second.endswith(" WARNING test_text_lines [req-42]: order ORD-2026-000001 refused")


def test_credentials_are_masked_in_any_log_line():
    logs.register_secrets(["whsec_test_masked_secret"])
    for text, secret in [("Authorization: Token Zm9vYmFyYmF6cXV4cXV1eA", "Zm9vYmFyYmF6cXV4cXV1eA"),
                         ("signed with whsec_test_masked_secret", "whsec_test_masked_secret"),
                         ("client_secret=abc123def&x=1", "abc123def"),
                         ('{"api_key": "sk_live_1"}', "sk_live_1"),
                         ("card 4242 4242 4242 4242", "4242 4242 4242 4242")]:
        assert secret not in logs.redact(text), text
    assert logs.redact("the webhook secret is wrong") == "the webhook secret is wrong"


@pytest.mark.gen_test
@pytest.mark.parametrize("access, anonymous, admin", [
    ("loopback", 200, 200), ("open", 200, 200), ("admin", 401, 200), ("off", 404, 404)])
async def test_metrics_access_follows_the_config(access, anonymous, admin):
    async with TestShop(config={"metrics": {"access": access}}) as shop:
        await shop.request("GET", "/health")
        r = await shop.request("GET", "/metrics")
        assert r.status == anonymous
        r = await shop.admin("GET", "/metrics")
        assert r.status == admin
        if admin == 200:
            assert r.headers["Content-Type"].startswith("text/plain")
            text = r.raw.decode()
            assert 'checkout_http_requests_total{method="GET",route="/health",status="200"}' in text
            assert "checkout_http_request_duration_seconds_bucket" in text
        else:
            assert r.body["error"]


def test_loopback_access_needs_the_admin_token_from_elsewhere():
    from checkout_server.handlers.operations import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.8.0.3")
    assert not is_loopback("10.0.0.5") and not is_loopback("203.0.113.9") and not is_loopback(None)


def metric_value(text: str, name: str, **labels) -> float:
    """The value of one sample in a Prometheus text exposition (0 if absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


@pytest.mark.gen_test
async def test_checkouts_settlements_stock_and_holds_are_counted():
    import checkout_fixtures as kit

    from checkout_server.payments.sweeper import sweep
    from checkout_server.plugin import PaymentCheck, PaymentState

    async with kit.shop() as shop:
        async def scrape() -> str:
            return (await shop.request("GET", "/metrics")).raw.decode()

        before = await scrape()
        p = await shop.product(price=1000, stock=1)
        direct = await shop.customer(cart={p["_id"]: 1})
        redirect = await shop.customer(cart={p["_id"]: 1})
        incomplete = await shop.customer(complete=False, cart={p["_id"]: 1})
        assert "order_key" in (await direct.checkout(kit.DIRECT, kit.FLAT)).body
        assert (await redirect.checkout(kit.REDIRECT, kit.FLAT)).status == 400  # sold out
        assert (await incomplete.checkout(kit.DIRECT, kit.INACTIVE_SHIPPING)).status == 400
        assert (await direct.checkout(kit.DIRECT, kit.FLAT, notes=5)).status == 400  # a bad body
        await shop.admin("PATCH", f"/api/admin/products/{p['_id']}", {"stock": 5})
        r = await redirect.checkout(kit.REDIRECT, kit.FLAT)
        key = r.body["next_step"].rsplit("/", 1)[1]
        kit.GATEWAY_STATE[key] = PaymentCheck(PaymentState.PAID, amount=1500, currency="EUR")
        assert (await shop.request("GET", await kit.return_path(shop.storage, key))).status == 302
        assert (await shop.request("GET", await kit.return_path(shop.storage, key))).status == 302  # replayed
        down = await shop.customer(cart={p["_id"]: 1})
        assert (await down.checkout(kit.DOWN, kit.FLAT)).status == 503
        late = await shop.customer(cart={p["_id"]: 1})
        late_key = (await late.checkout(kit.REDIRECT, kit.FLAT)).body["next_step"].rsplit("/", 1)[1]
        from datetime import UTC, datetime, timedelta
        report = await sweep(shop.storage, shop.methods, now=datetime.now(UTC) + timedelta(minutes=31))
        assert report.cancelled == [late_key]
        after = await scrape()

    def delta(name, **labels):
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert delta("checkout_checkouts_total", outcome="order", payment_method="1", flow="direct") == 1
    assert delta("checkout_checkouts_total", outcome="next_step", payment_method="2", flow="redirect") == 2
    assert delta("checkout_checkouts_total", outcome="refused", payment_method="2", flow="redirect") == 1
    assert delta("checkout_checkouts_total", outcome="refused", payment_method="1", flow="direct") == 1
    assert delta("checkout_checkouts_total", outcome="invalid", payment_method="unknown") == 1
    assert delta("checkout_checkouts_total", outcome="503", payment_method="3", flow="redirect") == 1
    assert delta("checkout_checkout_refusals_total", rule="cart") == 2  # both sold out
    assert delta("checkout_checkout_refusals_total", rule="profile") == 1
    assert delta("checkout_checkout_refusals_total", rule="shipping_method") == 1
    assert delta("checkout_stock_refusals_total", stage="validation") == 2
    assert delta("checkout_settlements_total", result="paid", source="return") == 1
    assert delta("checkout_settlements_total", result="failed", source="expiry") == 1
    assert delta("checkout_holds_expired_total", outcome="cancelled") == 1
    assert delta("checkout_gateway_calls_total", provider="test_redirect", operation="start", outcome="ok") == 2
    assert delta("checkout_gateway_calls_total", provider="test_redirect", operation="verify_return",
                 outcome="ok") == 1
    assert delta("checkout_gateway_calls_total", provider="test_gateway_down", operation="start",
                 outcome="unavailable") == 1
    assert delta("checkout_gateway_call_duration_seconds_count", provider="test_redirect", operation="start") == 2
    assert delta("checkout_http_requests_total", route="/api/shop/checkout/return/{method_id}",
                 method="GET", status="302") == 2


FORKING_PARENT = """
import os, sys
from checkout_server.observability import metrics

metrics.request_finished("/health", "GET", 200, 0.01)  # counted in memory before the workers exist
directory = metrics.prepare_multiprocess(sys.argv[1])
workers = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        metrics.checkout_finished("order", "1", "direct")
        os._exit(0)
    workers.append(pid)
for pid in workers:
    os.waitpid(pid, 0)
    metrics.worker_exited(pid)
sys.stdout.write(metrics.exposition().decode())
"""


def test_workers_forked_after_prepare_multiprocess_report_one_sum(tmp_path):
    import subprocess
    import sys

    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_999999.db").write_bytes(b"left by an earlier run")
    done = subprocess.run([sys.executable, "-c", FORKING_PARENT, str(directory)], check=False, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert metric_value(done.stdout, "checkout_checkouts_total", outcome="order", payment_method="1",
                        flow="direct") == 3
    assert not (directory / "counter_999999.db").exists()


@pytest.mark.gen_test
async def test_log_lines_name_the_order_once_it_is_known(log_stream):
    import checkout_fixtures as kit

    async with kit.shop() as shop:
        p = await shop.product(price=1000, stock=5)
        c = await shop.customer(cart={p["_id"]: 1})
        r = await c.request("POST", "/api/shop/checkout/cart", {"address": c.address_id, "payment_method": kit.REDIRECT,
                                                                 "shipping_method": kit.FLAT},
                            headers={"X-Request-Id": "checkout-1"})
        key = r.body["next_step"].rsplit("/", 1)[1]
        r = await shop.request("GET", await kit.return_path(shop.storage, key), headers={"X-Request-Id": "return-1"})
        assert r.status == 302
        r = await shop.request("GET", f"/api/shop/checkout/return/{kit.REDIRECT}?order={key}&rt=forged",
                               headers={"X-Request-Id": "forged-1"})
        assert r.status == 404
    by_request = {}
    for line in lines(log_stream):
        by_request.setdefault(line.get("request_id"), []).append(line)
    # The checkout's own line about the new order, and its access line, name it.
    assert all(line.get("order_key") == key for line in by_request["checkout-1"]), by_request["checkout-1"]
    assert any("HOLD" in line["message"] for line in by_request["checkout-1"])
    assert [line.get("order_key") for line in by_request["return-1"]][-1] == key
    # A return whose token does not match names no order: the key in its URL is anybody's.
    assert all("order_key" not in line for line in by_request["forged-1"])


def test_serve_with_workers_reports_one_sum_for_all_of_them(tmp_path):
    """`serve --workers 2`: whichever worker answers /metrics counts every worker's requests."""
    from live_service import LiveService

    metrics_dir = tmp_path / "prometheus"
    with LiveService(tmp_path, demo=True, args=("--workers", "2"),
                     env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}) as service:
        def scrape() -> float:
            import urllib.request
            with urllib.request.urlopen(service.base_url + "/metrics", timeout=30) as answer:
                text = answer.read().decode()
            return metric_value(text, "checkout_http_requests_total", route="/health", method="GET", status="200")

        def settled_count(expected: float) -> float:
            # A worker counts a request just after answering it: another worker's scrape may
            # come in between. Counts only grow, so read until they stop short of nothing.
            import time
            deadline = time.monotonic() + 10
            value = scrape()
            while value < expected and time.monotonic() < deadline:
                value = scrape()
            return value

        before = scrape()
        for _ in range(30):
            assert service.request("GET", "/health")[0] == 200
        assert settled_count(before + 30) == before + 30
        for _ in range(3):  # the same sum, whichever worker answers
            assert scrape() == before + 30
        writers = {path.name.rsplit("_", 1)[1] for path in metrics_dir.glob("counter_*.db")}
        assert writers, "no worker wrote its samples to the multiprocess directory"
    # The operator's directory is kept (emptied at the next start); a temporary one is removed.
    assert metrics_dir.exists()
