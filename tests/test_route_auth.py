"""Plugin routes: a route marked admin- or customer-only can never end up public."""

import pytest
import tornado.web

from checkout_server.plugin import APIError, BaseHandler, hookimpl
from checkout_server.plugin.manager import PluginError
from checkout_server.testing import TestShop, make_urls, query_params


def _routes_plugin(*routes):
    class Plugin:
        @staticmethod
        @hookimpl
        def register_routes(register):
            for pattern, handler in routes:
                register(pattern, handler)

    return Plugin


class PlainAdminExport(tornado.web.RequestHandler):
    auth = "admin"  # but nothing here checks a token

    def get(self):
        self.write({"secret": "all orders"})


class ForgetfulAdminExport(BaseHandler):
    auth = "admin"

    async def prepare(self):  # no super(): the token check would be skipped
        pass

    async def get(self):
        self.send({"secret": "all orders"})


class ForgetfulChild(BaseHandler):
    auth = "public"

    async def prepare(self):
        pass


class InheritsForgetfulPrepare(ForgetfulChild):
    auth = "customer"

    async def get(self):
        self.send({"secret": "mine"})


@pytest.mark.parametrize("handler", [PlainAdminExport, ForgetfulAdminExport, InheritsForgetfulPrepare])
@pytest.mark.gen_test
async def test_the_app_refuses_a_protected_route_that_would_not_check_the_token(handler):
    with pytest.raises(PluginError, match=r"^plugin 'Plugin': route '/acme/admin/export': "):
        async with TestShop(plugins=[_routes_plugin((r"/acme/admin/export", handler))]):
            pass


class PublicPlainPage(tornado.web.RequestHandler):
    auth = "public"

    def get(self):
        self.write({"hello": "world"})


class ExportForVip(BaseHandler):
    auth = "customer"

    async def authorize(self):
        if self.customer.get("name") != "VIP":
            raise APIError(403, "VIP customers only")

    async def get(self):
        self.send({"export": self.customer["email"]})


@pytest.mark.gen_test
async def test_public_plain_handlers_and_authorize_hooks_work():
    plugins = [_routes_plugin((r"/acme/hello", PublicPlainPage), (r"/acme/export", ExportForVip))]
    async with TestShop(plugins=plugins) as shop:
        assert (await shop.request("GET", "/acme/hello")).body == {"hello": "world"}
        # authorize runs after the token check: no token is still 401, a customer is then judged.
        assert (await shop.request("GET", "/acme/export")).status == 401
        customer = await shop.customer()
        r = await customer.request("GET", "/acme/export")
        assert r.status == 403 and r.body["error"] == "VIP customers only"


def test_make_urls_builds_the_return_url_the_core_builds():
    urls = make_urls(3, "ORD-2026-000007")
    assert urls.return_url.startswith("http://shop.test/api/shop/checkout/return/3?")
    assert query_params(urls.return_url) == {"order": "ORD-2026-000007", "rt": "test-return-token"}
    assert query_params(make_urls(3, return_token="abc").return_url)["rt"] == "abc"
    assert urls.notify_url == "http://shop.test/api/shop/checkout/notify/3"
