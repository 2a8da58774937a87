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
