"""Refund scenarios every gateway plugin whose provider refunds must pass, against its fake.

Mix `RefundScenarios` into the plugin's `GatewayScenarios` class and say how to make its
fake misbehave; pytest then runs every refund scenario too:

    class TestAcmeScenarios(WebhookGatewayScenarios, RefundScenarios):
        ...                                   # the gateway, as GatewayScenarios wants it
        refund_switches = RefundSwitches(refuse=..., lose_answers=..., reset=..., refunded=...)

(`REFUND_SCENARIOS[name](gw, switches)` runs one on any `GatewayShop`.)

Each scenario pays an order through the fake (checkout, "approve" on its page, back to
the shop), then refunds it through the admin API: full and partial refunds; a refund the
gateway refuses (400, recorded as failed, nothing refunded); the gateway down (503,
nothing recorded as refunded); the repeat of a refund whose answer was lost (a timeout:
refunded once). The fake's refund operation must be named "refund" (for `Faults.only`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar

import pytest

from checkout_server.plugin.fake_gateway import Faults, RunningFake

__all__ = ["REFUND_SCENARIOS", "RefundScenarios", "RefundSwitches", "admin_cancel", "admin_refund", "paid_order"]


@dataclass
class RefundSwitches:
    """How the scenarios make a plugin's fake misbehave, and read what it refunded."""

    refuse: Callable[[RunningFake], None]  # from now on every refund is refused (a 4xx)
    lose_answers: Callable[[RunningFake], None]  # refunds are made, their answers come too late
    reset: Callable[[RunningFake], None]  # back to normal
    refunded: Callable[[RunningFake], int]  # the total the fake has refunded (minor units)


async def paid_order(gw) -> str:
    """Check out, pay on the fake's page and come back: the PROCESSING order's key."""
    r = await gw.checkout()
    assert r.status == 200 and "next_step" in r.body, r
    key = await gw.last_order_key()
    r = await gw.follow(r.body["next_step"], "approve")
    assert r.status == 302 and r.headers["Location"] == gw.result_url(key, "paid"), r
    return key


async def admin_refund(gw, order_key: str, body: dict | None = None):
    return await gw.shop.admin("POST", f"/api/admin/orders/{order_key}/refund", body)


async def admin_cancel(gw, order_key: str, body: dict | None = None):
    return await gw.shop.admin("POST", f"/api/admin/orders/{order_key}/cancel", body)


def _statuses(order: dict) -> list[tuple[int, str]]:
    return [(r["amount"], r["status"]) for r in order["payment"]["refunds"]]


async def full_and_partial_refunds(gw, switches: RefundSwitches) -> None:
    key = await paid_order(gw)
    total = (await gw.shop.storage.orders.get(key))["total"]
    r = await admin_refund(gw, key, {"amount": 100})
    assert r.status == 200 and _statuses(r.body) == [(100, "succeeded")], r
    assert r.body["payment"]["refunds"][0]["reference"], "the gateway's refund id is recorded"
    r = await admin_refund(gw, key)  # the rest
    assert r.status == 200 and _statuses(r.body) == [(100, "succeeded"), (total - 100, "succeeded")], r
    assert r.body["refunds"]["refunded"] == total and switches.refunded(gw.fake) == total
    r = await admin_refund(gw, key, {"amount": 1})
    assert r.status == 409, r  # nothing left: refunded <= captured
    r = await admin_cancel(gw, key)  # fully refunded already: cancelled, nothing refunded twice
    assert r.status == 200 and r.body["status"] == "CANCELLED", r
    assert switches.refunded(gw.fake) == total
    product = await gw.shop.storage.products.get(gw.product_id)
    assert product["stock"] == gw.stock  # the units are back


async def cancel_refunds_a_paid_order(gw, switches: RefundSwitches) -> None:
    key = await paid_order(gw)
    total = (await gw.shop.storage.orders.get(key))["total"]
    r = await admin_cancel(gw, key, {"reason": "out of stock"})
    assert r.status == 200 and r.body["status"] == "CANCELLED" and _statuses(r.body) == [(total, "succeeded")], r
    assert switches.refunded(gw.fake) == total
    r = await admin_cancel(gw, key)
    assert r.status == 200 and switches.refunded(gw.fake) == total  # nothing twice


async def refund_refused(gw, switches: RefundSwitches) -> None:
    key = await paid_order(gw)
    switches.refuse(gw.fake)
    r = await admin_refund(gw, key, {"amount": 100})
    assert r.status == 400 and "refused" in r.body["error"], r
    order = (await gw.shop.admin("GET", f"/api/admin/orders/{key}")).body
    assert _statuses(order) == [(100, "failed")] and order["refunds"]["refunded"] == 0
    assert switches.refunded(gw.fake) == 0


async def gateway_down(gw, switches: RefundSwitches) -> None:
    key = await paid_order(gw)
    gw.fake.state.faults = Faults(status=503, only={"refund"})
    r = await admin_refund(gw, key, {"amount": 100})
    assert r.status == 503 and "nothing is recorded as refunded" in r.body["error"], r
    order = (await gw.shop.admin("GET", f"/api/admin/orders/{key}")).body
    assert order["refunds"]["refunded"] == 0 and order["status"] == "PROCESSING"
    assert switches.refunded(gw.fake) == 0
    gw.fake.state.faults = Faults()
    r = await admin_refund(gw, key, {"amount": 100})  # tried again, the gateway back
    assert r.status == 200 and _statuses(r.body) == [(100, "succeeded")], r
    assert switches.refunded(gw.fake) == 100


async def repeat_of_a_refund_that_timed_out(gw, switches: RefundSwitches) -> None:
    key = await paid_order(gw)
    switches.lose_answers(gw.fake)
    r = await admin_refund(gw, key, {"amount": 100})
    assert r.status == 503, r
    assert switches.refunded(gw.fake) == 100  # it did go through
    switches.reset(gw.fake)
    r = await admin_refund(gw, key, {"amount": 100})  # the admin repeats it
    assert r.status == 200 and _statuses(r.body) == [(100, "succeeded")], r
    assert switches.refunded(gw.fake) == 100  # refunded once


REFUND_SCENARIOS: dict[str, Callable[..., Awaitable[None]]] = {
    "full_and_partial": full_and_partial_refunds,
    "cancel_refunds": cancel_refunds_a_paid_order,
    "refused": refund_refused,
    "gateway_down": gateway_down,
    "timed_out_repeat": repeat_of_a_refund_that_timed_out,
}


class RefundScenarios:
    """Mix into a `GatewayScenarios` subclass whose provider refunds: every refund scenario."""

    refund_switches: ClassVar[RefundSwitches]

    @pytest.mark.gen_test(timeout=30)
    @pytest.mark.parametrize("scenario", list(REFUND_SCENARIOS))
    async def test_refunds(self, scenario):
        async with self.shop() as gw:
            await REFUND_SCENARIOS[scenario](gw, self.refund_switches)
