"""The demo storefront's files as the service serves them (the browser tests click through them)."""

import pytest

from checkout_server import storefront
from checkout_server.config import ConfigError, parse_config
from checkout_server.demo import demo_text, with_storefront
from checkout_server.handlers.storefront import is_loopback, may_see_demo_token
from checkout_server.testing import TestShop

ON = {"site": {"storefront": True}}


@pytest.mark.gen_test
async def test_off_by_default_the_paths_are_unknown_routes():
    async with TestShop() as shop:
        for path in ("/", "/orders/ORD-2026-000001", "/storefront/storefront.js"):
            r = await shop.request("GET", path)
            assert r.status == 404 and "storefront = true" in r.body["error"], path


@pytest.mark.gen_test
async def test_the_page_at_root_and_at_the_order_path():
    async with TestShop(ON) as shop:
        root = await shop.request("GET", "/")
        assert root.status == 200 and root.headers["Content-Type"] == "text/html; charset=UTF-8"
        assert b'<script src="/storefront/storefront.js" defer></script>' in root.raw
        assert b'name="demo-token"' not in root.raw  # not in demo mode: the shopper pastes a token
        csp = root.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert root.headers["X-Frame-Options"] == "DENY" and root.headers["Cache-Control"] == "no-store"
        order = await shop.request("GET", "/orders/ORD-2026-000001?payment=paid")
        assert order.status == 200 and order.raw == root.raw
        assert (await shop.request("POST", "/", {})).status == 405


@pytest.mark.gen_test
async def test_script_and_stylesheet_are_served_and_revalidated():
    async with TestShop(ON) as shop:
        for name, content_type in (("storefront.js", "text/javascript"), ("storefront.css", "text/css")):
            r = await shop.request("GET", f"/storefront/{name}")
            assert r.status == 200 and r.headers["Content-Type"].startswith(content_type)
            assert r.raw == storefront.read(name) and r.headers["Cache-Control"] == "no-cache"
            again = await shop.request("GET", f"/storefront/{name}", headers={"If-None-Match": r.headers["Etag"]})
            assert again.status == 304
        for path in ("/storefront/index.html", "/storefront/__init__.py", "/storefront/..%2f__init__.py"):
            r = await shop.request("GET", path)
            assert r.status == 404 and "error" in r.body, path


@pytest.mark.gen_test
async def test_the_demo_token_is_written_into_the_page_for_a_loopback_browser_only():
    async with TestShop(ON) as shop:
        shop.app.settings["demo_token"] = 'tok"<en>'
        r = await shop.request("GET", "/")
        assert b'<meta name="demo-token" content="tok&quot;&lt;en&gt;">' in r.raw
        assert r.headers["Cache-Control"] == "no-store"
        # A page whose DNS name was rebound to 127.0.0.1 sends its own Host: no token for it.
        r = await shop.request("GET", "/", headers={"Host": "evil.example"})
        assert r.status == 200 and b'name="demo-token"' not in r.raw
        # Through a proxy on this machine, the browser may be anywhere.
        r = await shop.request("GET", "/", headers={"X-Forwarded-For": "192.0.2.7"})
        assert r.status == 200 and b'name="demo-token"' not in r.raw


@pytest.mark.parametrize(("peer", "host", "allowed"), [
    ("127.0.0.1", "127.0.0.1:8888", True),
    ("127.0.0.1", "localhost:8888", True),
    ("::1", "[::1]:8888", True),
    ("::ffff:127.0.0.1", "LOCALHOST", True),
    ("127.0.0.1", "shop.example:8888", False),        # DNS rebinding
    ("127.0.0.1", "127.0.0.1.evil.example", False),
    ("127.0.0.1", "[::1", False),                     # malformed Host
    ("192.0.2.7", "127.0.0.1:8888", False),           # another machine, whatever Host it claims
    (None, "127.0.0.1:8888", False),                  # a unix socket
])
def test_who_may_see_the_demo_token(peer, host, allowed):
    assert may_see_demo_token(peer, host) is allowed
    assert may_see_demo_token(peer, host, forwarded=True) is False


def test_is_loopback():
    assert is_loopback("127.0.0.2") and is_loopback("::1")
    assert not is_loopback("10.0.0.1") and not is_loopback("") and not is_loopback("not an ip")


def test_the_config_flag():
    assert parse_config({}, None).site.storefront is False
    assert parse_config(ON, None).site.storefront is True
    with pytest.raises(ConfigError, match=r"\[site\] storefront: must be true or false"):
        parse_config({"site": {"storefront": "yes"}}, "shop.toml")


def test_the_demo_turns_the_storefront_on_and_points_at_it():
    config = with_storefront(parse_config({}, None))
    assert config.site.storefront is True
    text = demo_text({"token": "t", "address_id": 1, "payment_method": 1, "shipping_method": 1},
                     "http://127.0.0.1:9000")
    assert "open http://127.0.0.1:9000/ in a browser" in text
