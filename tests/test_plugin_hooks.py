"""Each hook works as documented; every hook has a `test_hook_<name>` test somewhere."""

import re
from pathlib import Path

import pytest

from checkout_server.plugin import hookspecs
from checkout_server.plugin.hookspecs import hookimpl
from checkout_server.plugin.manager import (
    PluginError,
    collect_providers,
    make_plugin_manager,
)
from checkout_server.plugin.providers import PaymentProvider, ShippingProvider, Support
from checkout_server.plugin.web import BaseHandler
from checkout_server.testing import TestShop

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("register_"))


class GiftCard(PaymentProvider):
    name = "gift_card"
    flow = "direct"

    def supports(self, cart):
        return Support.yes() if cart.subtotal <= 5000 else Support.no("gift cards cover up to 50.00")


class Courier(ShippingProvider):
    name = "courier"

    def quote(self, cart, address):
        return 700


class GiftCardPlugin:
    @hookimpl
    def register_payment_providers(self, register):
        register(GiftCard)


class CourierPlugin:
    @hookimpl
    def register_shipping_providers(self, register):
        register(Courier)


@pytest.mark.gen_test
async def test_hook_register_payment_providers():
    pm = make_plugin_manager(load_entry_points=False)
    pm.register(GiftCardPlugin())
    assert collect_providers(pm) == ({"gift_card": GiftCard}, {})
    config = {"payment_methods": [{"id": 2, "provider": "gift_card", "title": "Gift card"}]}
    async with TestShop(config=config, plugins=[GiftCardPlugin()]) as shop:
        product = await shop.product(price=2000)
        customer = await shop.customer(cart={product["_id"]: 1})
        r = await customer.request("GET", f"/api/shop/checkout/methods?address={customer.address_id}")
        assert r.body["payment_methods"] == [{"id": 2, "title": "Gift card", "flow": "direct"}]


@pytest.mark.gen_test
async def test_hook_register_shipping_providers():
    pm = make_plugin_manager(load_entry_points=False)
    pm.register(CourierPlugin())
    assert collect_providers(pm) == ({}, {"courier": Courier})
    config = {"shipping_methods": [{"id": 5, "provider": "courier", "title": "Courier"}]}
    async with TestShop(config=config, plugins=[CourierPlugin()]) as shop:
        product = await shop.product()
        customer = await shop.customer(cart={product["_id"]: 1})
        r = await customer.request("GET", f"/api/shop/checkout/methods?address={customer.address_id}")
        assert r.body["shipping_methods"] == [{"id": 5, "title": "Courier", "cost": 700}]


class PingHandler(BaseHandler):
    auth = "public"

    def initialize(self, answer="pong", **kwargs):
        super().initialize(**kwargs)
        self.answer = answer

    async def get(self):
        self.send({"ping": self.answer})


class RoutesPlugin:
    @hookimpl
    def register_routes(self, register):
        register(r"/plugin/ping", PingHandler, {"answer": "plugin pong"})
        register(r"/health", PingHandler)  # the core's route wins a clash


class UnmarkedHandler(BaseHandler):
    auth = None


@pytest.mark.gen_test
async def test_hook_register_routes():
    async with TestShop(plugins=[RoutesPlugin()]) as shop:
        r = await shop.request("GET", "/plugin/ping")
        assert r.status == 200 and r.body == {"ping": "plugin pong"}
        r = await shop.request("GET", "/health")
        assert r.body == {"status": "ok"}

    class Unmarked:
        @hookimpl
        def register_routes(self, register):
            register(r"/plugin/open", UnmarkedHandler)

    with pytest.raises(PluginError, match="UnmarkedHandler must set auth"):
        async with TestShop(plugins=[Unmarked()]):
            pass


def _test_sources() -> str:
    files = [*ROOT.glob("tests/**/test_*.py"), *ROOT.glob("plugins/*/tests/**/test_*.py")]
    return "\n".join(path.read_text(encoding="utf-8") for path in files)


@pytest.mark.parametrize("hook", HOOKS)
def test_plugin_hooks_have_tests(hook):
    """Every hook needs a test named `test_hook_<hook>` (in tests/ or a plugin's tests/)."""
    has_test = re.search(rf"def test_hook_{hook}\b", _test_sources()) is not None
    assert has_test, f"plugin hook {hook} has no test: add `def test_hook_{hook}()`"


@pytest.mark.parametrize("hook", HOOKS)
def test_hookspecs_take_a_register_callback_and_have_a_docstring(hook):
    spec = getattr(hookspecs, hook)
    assert spec.__code__.co_varnames[:spec.__code__.co_argcount] == ("register",)
    assert (spec.__doc__ or "").strip(), f"{hook} has no docstring"
    assert hook in hookspecs.__all__
