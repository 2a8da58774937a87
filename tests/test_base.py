"""The base handler: auth, JSON errors for every status, body limits, auth markers."""

import pytest
import tornado.web

from checkout_server.plugin.web import MAX_BODY_BYTES, BaseHandler
from checkout_server.testing import TestShop


def _is_json_error(r, status):
    return r.status == status and isinstance(r.body, dict) and isinstance(r.body.get("error"), str) \
        and r.headers["Content-Type"].startswith("application/json") and b"Traceback" not in r.raw


@pytest.mark.gen_test
async def test_unknown_routes_and_verbs_are_json():
    async with TestShop() as shop:
        for method, path in (("GET", "/nope"), ("POST", "/api/shop/nope"), ("DELETE", "/api")):
            assert _is_json_error(await shop.request(method, path, token="x"), 404)
        # A wrong verb is 405 before authentication, with the allowed verbs.
        r = await shop.request("DELETE", "/api/shop/profile")
        assert _is_json_error(r, 405) and r.headers["Allow"] == "GET, PATCH"
        assert _is_json_error(await shop.request("PUT", "/health"), 405)
        assert _is_json_error(await shop.request("FOO", "/api/shop/cart"), 405)


@pytest.mark.gen_test
async def test_missing_malformed_and_unknown_tokens_are_401():
    async with TestShop() as shop:
        for headers in ({}, {"Authorization": "Token"}, {"Authorization": "Bearer abc"},
                        {"Authorization": "Token " + "a" * 300}, {"Authorization": "Token nope"},
                        {"Authorization": "abc"}):
            r = await shop.request("GET", "/api/shop/profile", headers=headers)
            assert _is_json_error(r, 401), headers
            assert r.headers["WWW-Authenticate"] == "Token"
        customer = await shop.customer()
        r = await shop.request("GET", "/api/shop/profile", headers={"Authorization": f"token {customer.token}"})
        assert r.status == 200


@pytest.mark.gen_test
async def test_tokens_are_stored_only_as_hashes():
    async with TestShop() as shop:
        r = await shop.admin("POST", "/api/admin/customers", {"first_name": "Ada"})
        token = r.body["token"]
        doc = await shop.storage.customers.get(r.body["id"])
        assert token not in repr(doc)
        assert (await shop.request("GET", "/api/shop/profile", token=token)).body["first_name"] == "Ada"


@pytest.mark.gen_test
async def test_admin_endpoints_need_the_admin_token():
    async with TestShop() as shop:
        customer = await shop.customer()
        r = await customer.request("POST", "/api/admin/products", {"name": "X", "price": 1, "stock": 1})
        assert _is_json_error(r, 403)
        for token in (None, "wrong", TestShop.ADMIN_TOKEN + "x"):
            r = await shop.request("POST", "/api/admin/products", {"name": "X", "price": 1, "stock": 1}, token=token)
            assert _is_json_error(r, 401)
        # The admin token is not a customer token.
        assert _is_json_error(await shop.request("GET", "/api/shop/cart", token=TestShop.ADMIN_TOKEN), 401)
        assert await shop.storage.products.all() == []


@pytest.mark.gen_test
async def test_admin_api_is_closed_when_no_admin_token_is_configured():
    async with TestShop() as shop:
        shop.app.settings["admin_token"] = None
        r = await shop.request("GET", "/api/admin/products/1", token="")
        assert _is_json_error(r, 401)
        r = await shop.request("GET", "/api/admin/products/1", token="None")
        assert _is_json_error(r, 401)


@pytest.mark.gen_test
async def test_without_an_admin_token_a_customer_token_is_401_too():
    # CONTRACT.md: "Unset: the admin API answers 401 to everyone", customers included.
    async with TestShop() as shop:
        customer = await shop.customer()
        for unset in (None, ""):
            shop.app.settings["admin_token"] = unset
            for method, path, body in (("GET", "/api/admin/products/1", None),
                                       ("POST", "/api/admin/products", {"name": "X", "price": 1, "stock": 1}),
                                       ("GET", "/api/admin/orders/ORD-2026-000001", None)):
                r = await customer.request(method, path, body)
                assert _is_json_error(r, 401) and r.headers["WWW-Authenticate"] == "Token", (unset, path)
        assert await shop.storage.products.all() == []


@pytest.mark.gen_test
async def test_bodies_over_the_limit_are_413_json():
    async with TestShop() as shop:
        customer = await shop.customer()
        raw = b'{"first_name": "' + b"a" * MAX_BODY_BYTES + b'"}'
        r = await customer.request("PATCH", "/api/shop/profile", raw_body=raw,
                                   headers={"Content-Type": "application/json"})
        assert _is_json_error(r, 413)
        assert (await shop.storage.customers.get(customer.id))["first_name"] == "Ada"


@pytest.mark.gen_test
async def test_a_crashing_handler_answers_json_500_without_traceback():
    class Boom(BaseHandler):
        auth = "public"

        async def get(self):
            raise RuntimeError("secret internals")

    async with TestShop() as shop:
        shop.app.wildcard_router.add_rules([(r"/boom", Boom)])
        r = await shop.request("GET", "/boom")
        assert _is_json_error(r, 500) and b"secret" not in r.raw


def test_the_app_refuses_a_handler_without_a_valid_auth(monkeypatch):
    from checkout_server import app as app_module
    from checkout_server.config import parse_config
    from checkout_server.plugin.manager import make_plugin_manager
    from checkout_server.testing import mongomock_storage

    class Sloppy(tornado.web.RequestHandler):
        pass

    class Typo(BaseHandler):
        auth = "publc"

    for bad in (Sloppy, Typo):
        monkeypatch.setattr(app_module, "all_handlers", lambda bad=bad: [(r"/x", bad)])
        with pytest.raises(RuntimeError, match="auth"):
            app_module.Application(mongomock_storage(), parse_config({}, None),
                                   plugin_manager=make_plugin_manager(load_entry_points=False))


def test_handlers_are_authenticated_unless_they_say_public():
    from checkout_server.handlers import all_handlers

    assert BaseHandler.auth == "customer"
    public = {route[0] for route in all_handlers() if route[1].auth == "public"}
    # Only the health check and the gateway-facing payment endpoints are public.
    assert "/health" in public
    assert not any(p.startswith(("/api/shop/profile", "/api/shop/cart", "/api/shop/addresses", "/api/admin"))
                   for p in public)


@pytest.mark.gen_test
async def test_a_database_that_does_not_answer_is_503_json(monkeypatch):
    from pymongo.errors import ServerSelectionTimeoutError

    async with TestShop() as shop:
        customer = await shop.customer()

        async def down(*args, **kwargs):
            raise ServerSelectionTimeoutError("no servers")

        async def no_ping():
            return False

        monkeypatch.setattr(shop.storage.customers, "by_token_hash", down)
        monkeypatch.setattr(shop.storage, "ping", no_ping)
        r = await customer.request("GET", "/api/shop/cart")
        assert _is_json_error(r, 503) and b"no servers" not in r.raw
        r = await shop.request("GET", "/health")
        assert _is_json_error(r, 503)
