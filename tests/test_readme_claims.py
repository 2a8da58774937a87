"""What README.md claims about stock, emails and limits is what the service does."""

from pathlib import Path

import checkout_fixtures as kit
import pytest

from checkout_server.handlers.account import MAX_ADDRESSES
from checkout_server.handlers.cart import MAX_CART_LINES
from checkout_server.stock import commits

README = (Path(__file__).parents[1] / "README.md").read_text()


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.gen_test
async def test_the_stock_ledger_is_as_the_readme_states_it():
    # held: units of orders waiting for payment; a paid order's units are in neither stock nor held.
    async with kit.shop() as s:
        p = await s.product(stock=10)
        paid = await s.customer(cart={p["_id"]: 2})
        assert (await paid.checkout(kit.DIRECT, kit.FLAT)).status == 200
        waiting = await s.customer(cart={p["_id"]: 3})
        assert (await waiting.checkout(kit.REDIRECT, kit.FLAT)).status == 200
        await commits.flush(s.storage)  # "a moment after": the batch tidying paid orders' products
        product = (await s.admin("GET", f"/api/admin/products/{p['_id']}")).body
        assert (product["received"], product["stock"], product["held"]) == (10, 5, 3)
        assert product["received"] == product["stock"] + 2 + 3  # + units of PROCESSING and HOLD orders
    readme = _flat(README)
    assert "received == stock + held" not in readme
    assert "`stock` plus the units of the product's `HOLD` and `PROCESSING` orders" in readme
    assert "`held` is the part of those units in orders still waiting for payment" in readme


def test_the_readme_states_the_limits_and_how_exact_they_are():
    readme = _flat(README)
    assert "Emails are unique, compared case-insensitively" in readme
    assert "the check is not atomic against two simultaneous writes" in readme
    assert f"A cart holds at most {MAX_CART_LINES} different products, an approximate limit" in readme
    assert f"An address book holds at most {MAX_ADDRESSES} addresses, approximate" in readme
