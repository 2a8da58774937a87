import pytest

from checkout_server.testing import TestShop


@pytest.mark.gen_test
async def test_health_ok_and_unknown_routes_are_json():
    async with TestShop() as shop:
        r = await shop.request("GET", "/health")
        assert r.status == 200 and r.body == {"status": "ok"}
        r = await shop.request("GET", "/nope")
        assert r.status == 404 and "error" in r.body
        r = await shop.request("DELETE", "/health")
        assert r.status == 405 and "error" in r.body
