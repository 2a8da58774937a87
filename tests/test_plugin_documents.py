"""A plugin keeps its own documents: the core hands the same ones to its providers and routes."""

import pytest

from checkout_server.plugin import (
    APIError,
    BaseHandler,
    PaymentCheck,
    PaymentProvider,
    PaymentStart,
    PaymentState,
    hookimpl,
)
from checkout_server.testing import CourierPlugin, TestShop


class VoucherPay(PaymentProvider):
    """Pays with a voucher the shopper redeems on the plugin's own page."""

    name = "voucher"
    flow = "redirect"

    async def start(self, order, urls):
        voucher = await self.documents.insert({"order_key": order.order_key, "amount": order.total,
                                               "state": "open", "return_url": urls.return_url})
        return PaymentStart(redirect_url=f"{self.site.base_url}/voucher/{voucher['_id']}",
                            reference=voucher["_id"], data={"voucher": voucher["_id"]})

    async def check(self, order):
        voucher = await self.documents.get(order.payment["voucher"])
        if voucher["state"] == "redeemed":
            return PaymentCheck(PaymentState.PAID, amount=voucher["amount"], currency=order.currency)
        return PaymentCheck(PaymentState.PENDING)


class RedeemPage(BaseHandler):
    auth = "customer"  # the default, said out loud

    async def authorize(self):
        if not self.configured_methods("voucher"):
            raise APIError(404, "no voucher method")

    async def post(self, voucher_id):
        voucher = await self.documents.update(voucher_id, {"state": "redeemed", "by": self.customer["_id"]},
                                              where={"state": "open"})
        if voucher is None:
            raise APIError(409, "this voucher is not open")
        self.send({"return_url": voucher["return_url"], "site": self.site.base_url})


class VoucherPlugin:
    @hookimpl
    def register_payment_providers(self, register):
        register(VoucherPay)

    @hookimpl
    def register_routes(self, register):
        register(r"/voucher/([\w-]+)", RedeemPage)


CONFIG = {"payment_methods": [{"id": 5, "provider": "voucher", "title": "Voucher"}],
          "shipping_methods": [{"id": 1, "provider": "test_courier", "title": "Courier"}]}


@pytest.mark.gen_test(timeout=30)
async def test_a_provider_and_its_plugins_route_share_documents_and_know_the_site():
    plugin = VoucherPlugin()
    async with TestShop(config=CONFIG, plugins=[plugin, CourierPlugin]) as shop:
        product = await shop.product(price=1000, stock=3)
        customer = await shop.customer(cart={product["_id"]: 1})
        r = await customer.checkout(5, 1)
        assert r.status == 200 and r.body["next_step"].startswith(f"{shop.base_url}/voucher/"), r
        page = r.body["next_step"][len(shop.base_url):]
        [voucher] = await shop.documents(plugin).find()
        assert voucher["state"] == "open" and voucher["amount"] == 1500
        # A plugin route is for customers unless it says otherwise: no token, no voucher.
        assert (await shop.request("POST", page)).status == 401
        r = await customer.request("POST", page)
        assert r.status == 200 and r.body["site"] == shop.base_url
        assert (await customer.request("POST", page)).status == 409  # redeemed once
        assert (await shop.documents(plugin).get(voucher["_id"]))["by"] == customer.id
        back = await shop.request("GET", r.body["return_url"][len(shop.base_url):])
        assert back.status == 302 and back.headers["Location"].endswith("payment=paid")
        # The core's own collections never hold a plugin's documents, nor the reverse.
        assert await shop.storage.orders.find({"amount": 1500}) == []


@pytest.mark.gen_test(timeout=30)
async def test_a_plugins_route_without_its_method_configured_can_say_so():
    async with TestShop(config={}, plugins=[VoucherPlugin()]) as shop:
        customer = await shop.customer()
        r = await customer.request("POST", "/voucher/abc")
        assert r.status == 404 and r.body["error"] == "no voucher method"


def test_a_provider_outside_the_service_has_the_default_site_and_no_documents():
    from checkout_server.testing import load_provider

    provider = load_provider(VoucherPay, {})
    assert provider.documents is None and provider.site.base_url == "http://localhost:8888"
