"""After the faults: reconcile, then check the invariants straight in the database."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fault_shoppers import Ledger

from checkout_server.stock.reservations import reconcile
from checkout_server.storage import Storage
from checkout_server.testing import stock_ledger_problem, units_held_by_orders

FINAL = ("PROCESSING", "CANCELLED")


async def invariant_problems(storage: Storage, ledger: Ledger, customer_ids: list[int]) -> list[str]:
    """Everything wrong with the data after a run (an empty list when all is well)."""
    # Nothing runs any more: every unfinished checkout is one a kill interrupted.
    await reconcile(storage, stale_after=timedelta(0))
    problems = []
    held = await units_held_by_orders(storage)
    for product in await storage.products.all():
        if product["stock"] < 0:
            problems.append(f"product {product['_id']}: negative stock {product['stock']}")
        if problem := stock_ledger_problem(product, held):
            problems.append(problem)
    orders = {o.key: o for o in await storage.orders.find({}, limit=1_000_000)}
    for key, order in orders.items():
        if order.stock == "reserving":
            problems.append(f"order {key}: still reserving after reconciliation")
        if order.status in FINAL and order.stock == "held":
            problems.append(f"order {key}: {order.status} but its units still held")
    for product_id, markers in (await storage.products.all_holds()).items():
        for key in markers:
            order = orders.get(key)
            if order is None or order.status != "HOLD" or order.stock != "held":
                problems.append(f"product {product_id}: orphan marker of {key} "
                                f"({'no such order' if order is None else order.status})")
    for customer_id in customer_ids:
        cart = (await storage.customers.get(customer_id))["cart"]
        problems.extend(f"customer {customer_id}: cart line {product} is {quantity}"
                        for product, quantity in cart.items() if quantity < 0)
    for key, statuses in ledger.orders.items():
        order = orders.get(key)
        if order is None:
            problems.append(f"order {key}: acknowledged, but gone")
        elif order.status not in statuses:
            problems.append(f"order {key}: {order.status}, but the answers promised {sorted(statuses)}")
    return problems


def check_database(uri: str, ledger: Ledger, customer_ids: list[int]) -> list[str]:
    async def run():
        storage = Storage.connect(uri, "checkout")
        try:
            return await invariant_problems(storage, ledger, customer_ids)
        finally:
            await storage.close()

    return asyncio.run(run())
