"""The kit gateway plugins test with: fake gateway scaffolding and the shop-consistency assertions."""

import pytest
from aiohttp import ClientSession, web

from checkout_server.plugin.fake_gateway import (
    STATE,
    add_payment_page,
    approval_page,
    json_object,
    new_app,
    record_or_404,
    run_fake,
    shopper_choice,
    transport_faults,
)
from checkout_server.testing import (
    CourierPlugin,
    TestShop,
    assert_consistent,
    follow_next_step,
)


def tiny_gateway(base_url: str) -> web.Application:
    """A fake with one payment page and a lookup API, built only from the kit."""
    app = new_app(base_url)

    async def lookup(request: web.Request) -> web.Response:
        return web.json_response(record_or_404(request, request.match_info["id"], {"error": "no such payment"}))

    async def create(request: web.Request) -> web.Response:
        body = await json_object(request)
        if body is None:
            return web.json_response({"error": "not a JSON object"}, status=400)
        request.app[STATE].records[body["id"]] = {"status": "open", "back": body["back"]}
        return web.json_response({"id": body["id"]})

    def open_payment(request: web.Request) -> dict | None:
        record = request.app[STATE].records.get(request.match_info["id"])
        return record if record is not None and record["status"] == "open" else None

    def choose(request: web.Request, record: dict, choice: str | None) -> str:
        record["status"] = choice
        return record["back"]

    app.router.add_get("/api/{id}", lookup)
    app.router.add_post("/api", create)
    add_payment_page(app, "/pay/{id}", payable=open_payment, choose=choose,
                     page=lambda record: approval_page("Tiny", "10.00 EUR", {"approve": "Pay", "cancel": "No"}))
    return app


@pytest.mark.gen_test(timeout=20)
async def test_fake_kit_payment_page_lookup_and_json_bodies():
    async with run_fake(tiny_gateway) as fake, ClientSession() as client:
        async with client.post(f"{fake.base_url}/api", data=b"[1, 2]") as answer:
            assert answer.status == 400  # json_object: a JSON list is not a body
        async with client.post(f"{fake.base_url}/api", json={"id": "p1", "back": "http://shop.test/back"}) as answer:
            assert answer.status == 200
        async with client.get(f"{fake.base_url}/api/nope") as answer:
            assert answer.status == 404 and await answer.json() == {"error": "no such payment"}

        assert await shopper_choice(f"{fake.base_url}/pay/p1", "approve") == "http://shop.test/back"
        async with client.get(f"{fake.base_url}/api/p1") as answer:
            assert (await answer.json())["status"] == "approve"
        for method in ("GET", "POST"):  # no longer waiting for the shopper: both pages are gone
            async with client.request(method, f"{fake.base_url}/pay/p1", data={"choice": "approve"},
                                      allow_redirects=False) as answer:
                assert answer.status == 410
        async with client.get(f"{fake.base_url}/pay/unknown") as answer:
            assert answer.status == 410


def test_transport_faults_are_fresh_each_call():
    first, second = transport_faults(), transport_faults()
    assert list(first) == ["timeout", "5xx", "malformed"]
    first["5xx"].only = frozenset({"create"})
    assert second["5xx"].only is None and second["5xx"].status >= 500


@pytest.mark.gen_test(timeout=20)
async def test_assert_consistent_names_every_disagreement():
    async with TestShop(plugins=[CourierPlugin]) as shop:
        product = await shop.product(stock=5)
        pid = product["_id"]
        customer = await shop.customer(cart={pid: 2})
        await assert_consistent(shop, None, customer=customer, stock={pid: 5}, cart={pid: 2})

        with pytest.raises(AssertionError, match=rf"product {pid}: stock 5, expected 3"):
            await assert_consistent(shop, None, customer=customer, stock={pid: 3}, cart={pid: 2})
        with pytest.raises(AssertionError, match=r"cart .*expected \{\}"):
            await assert_consistent(shop, None, customer=customer, stock={pid: 5}, cart={})
        with pytest.raises(AssertionError, match="no order ORD-1"):
            await assert_consistent(shop, "ORD-1", customer=customer, status="HOLD", stock={pid: 5},
                                    cart={pid: 2})
        # Units leave the shelf for no order: the ledger no longer adds up.
        await shop.storage.products.reserve("ORD-LOST", {pid: 2})
        with pytest.raises(AssertionError, match=rf"product {pid}: received 5 != stock 3 \+ held by orders 0"):
            await assert_consistent(shop, None, customer=customer, stock={pid: 3}, cart={pid: 2})


@pytest.mark.gen_test(timeout=20)
async def test_follow_next_step_refuses_a_redirect_away_from_the_return_url():
    async with run_fake(tiny_gateway) as fake, ClientSession() as client, TestShop() as shop:
        async with client.post(f"{fake.base_url}/api", json={"id": "p2", "back": "http://shop.test/elsewhere"}):
            pass
        with pytest.raises(AssertionError, match="not /api/shop/checkout/return/"):
            await follow_next_step(shop, f"{fake.base_url}/pay/p2")
