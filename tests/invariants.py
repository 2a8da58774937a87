"""Invariants the whole suite checks (DESIGN.md), as reusable assertions."""

from __future__ import annotations

from datetime import timedelta

from checkout_server.reservations import reconcile


async def assert_stock_invariant(storage, *, run_reconciler: bool = True) -> None:
    """Invariant 1: for every product, received == stock + units of HOLD/PROCESSING orders.

    Runs the reconciler first (as the invariant is stated "after reconciliation"), treating
    every unfinished checkout as interrupted: call it when no checkout is in flight.
    """
    if run_reconciler:
        await reconcile(storage, stale_after=timedelta(0))
    held: dict[int, int] = {}
    for order in await storage.orders.find({"status": {"$in": ["HOLD", "PROCESSING"]}}, limit=1_000_000):
        for item in order["items"]:
            held[item["product"]] = held.get(item["product"], 0) + item["quantity"]
    problems = []
    for product in await storage.products.all():
        pid = product["_id"]
        if product["stock"] < 0:
            problems.append(f"product {pid}: negative stock {product['stock']}")
        if product["received"] != product["stock"] + held.get(pid, 0):
            problems.append(f"product {pid}: received {product['received']} != stock {product['stock']} "
                            f"+ held by orders {held.get(pid, 0)}")
    assert not problems, "stock invariant broken:\n" + "\n".join(problems)
