"""Invariants the whole suite checks (DESIGN.md), as reusable assertions."""

from __future__ import annotations

from datetime import timedelta

from checkout_server.stock.reservations import reconcile
from checkout_server.testing import stock_ledger_problem, units_held_by_orders


async def assert_stock_invariant(storage, *, run_reconciler: bool = True) -> None:
    """Invariant 1: for every product, received == stock + units of HOLD/PROCESSING orders.

    Runs the reconciler first (as the invariant is stated "after reconciliation"), treating
    every unfinished checkout as interrupted: call it when no checkout is in flight.
    """
    if run_reconciler:
        await reconcile(storage, stale_after=timedelta(0))
    held = await units_held_by_orders(storage)
    problems = []
    for product in await storage.products.all():
        if product["stock"] < 0:
            problems.append(f"product {product['_id']}: negative stock {product['stock']}")
        if problem := stock_ledger_problem(product, held):
            problems.append(problem)
    assert not problems, "stock invariant broken:\n" + "\n".join(problems)
