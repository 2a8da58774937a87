"""--demo: a small catalog, one ready customer, and curl lines to paste.

Seeding is idempotent: products are found by name and the customer by e-mail, so a second
run duplicates nothing. Only token hashes are stored, so the demo customer gets a fresh
token on every run (the old one stops working), and its cart quantities are set, not added.
"""

from __future__ import annotations

import secrets
import shlex
from pathlib import Path

from .handlers.base import hash_token

DEMO_CONFIG_PATH = Path(__file__).parent / "demo" / "checkout.toml"

# name, price (minor units), stock, digital, weight (grams per unit)
CATALOG = [
    ("Espresso cup", 1200, 40, False, 180),
    ("Coffee beans 1 kg", 2490, 100, False, 1000),
    ("Hand grinder", 5900, 15, False, 650),
    ("Milk jug", 1850, 25, False, 300),
    ("Brewing guide (e-book)", 900, 10_000, True, 0),
]
DEMO_EMAIL = "demo@example.com"
DEMO_PROFILE = {"first_name": "Dana", "last_name": "Demo", "email": DEMO_EMAIL, "phone": "+49 30 1234567"}
DEMO_ADDRESS = {"line1": "Kaffeestraße 1", "line2": "", "city": "Berlin", "postal_code": "10115",
                "country": "DE"}
# product name -> quantity in the demo cart
DEMO_CART = {"Espresso cup": 2, "Coffee beans 1 kg": 1}


async def seed_demo(storage, table) -> dict:
    """Create what is missing; returns the token, ids and method ids for print_demo."""
    products = {}
    for name, price, stock, digital, weight in CATALOG:
        product = await storage.products.find_by_name(name)
        if product is None:
            product = await storage.products.create(
                {"name": name, "price": price, "stock": stock, "digital": digital, "weight": weight})
        products[name] = product

    token = secrets.token_urlsafe(32)
    customer = await storage.customers.find_by_email(DEMO_EMAIL)
    if customer is None:
        customer = await storage.customers.create(hash_token(token), DEMO_PROFILE)
    else:
        await storage.customers.set_token_hash(customer["_id"], hash_token(token))
        await storage.customers.update_profile(customer["_id"], DEMO_PROFILE)
    customer_id = customer["_id"]
    addresses = (await storage.customers.get(customer_id)).get("addresses") or {}
    if addresses:
        address_id = min(a["id"] for a in addresses.values())
    else:
        address_id = (await storage.customers.add_address(customer_id, DEMO_ADDRESS))["id"]
    for name, quantity in DEMO_CART.items():
        await storage.customers.set_cart_quantity(customer_id, products[name]["_id"], quantity)

    active_payment = [m.id for m in table.payment.values() if m.active]
    active_shipping = [m.id for m in table.shipping.values() if m.active]
    return {
        "token": token,
        "customer_id": customer_id,
        "address_id": address_id,
        "products": {name: p["_id"] for name, p in products.items()},
        "payment_method": active_payment[0] if active_payment else 1,
        "shipping_method": active_shipping[0] if active_shipping else 1,
    }


def demo_text(seeded: dict, base_url: str) -> str:
    token = seeded["token"]
    auth = shlex.quote(f"Authorization: Token {token}")
    checkout_body = (f'{{"address": {seeded["address_id"]}, "payment_method": {seeded["payment_method"]}, '
                     f'"shipping_method": {seeded["shipping_method"]}, "notes": "Please deliver after 5 PM"}}')
    lines = [
        "",
        "Demo shop ready.",
        f"DEMO_TOKEN={token}",
        "",
        "# the demo customer's cart",
        f"curl -s {base_url}/api/shop/cart -H {auth}",
        "# the payment and shipping methods this cart and address can use",
        f"curl -s '{base_url}/api/shop/checkout/methods?address={seeded['address_id']}' -H {auth}",
        "# check out (the seed page's request)",
        (f'curl -X POST "{base_url}/api/shop/checkout/cart" -H {auth} '
         f"-H 'Content-Type: application/json' -d '{checkout_body}'"),
        "",
    ]
    return "\n".join(lines)


def print_demo(seeded: dict, base_url: str) -> None:
    print(demo_text(seeded, base_url), flush=True)
