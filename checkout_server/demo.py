"""--demo: a small catalog, one ready customer, and curl lines to paste.

Seeding is idempotent: products are found by name and the customer by e-mail, so a second
run duplicates nothing. Only token hashes are stored, so the demo customer gets a fresh
token on every run (the old one stops working), and its cart quantities are set, not added.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import shlex
from pathlib import Path
from urllib.parse import urlsplit

from checkout_server.config import Config
from checkout_server.plugin.web import hash_token

log = logging.getLogger(__name__)

DEMO_CONFIG_PATH = Path(__file__).parent / "demo" / "checkout.toml"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}

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


def listen_url(host: str, port: int) -> str:
    """The address to show for a server listening on host:port (a wildcard shows loopback)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port}"


def follow_listen_address(config: Config, host: str, port: int) -> Config:
    """The config with its loopback site URLs moved to the address the demo listens on.

    The demo config says http://127.0.0.1:8888; run with PORT=9000 and the sandbox's pages
    and the return URL must both be on :9000 instead, or the shopper's browser is sent
    where nothing listens. Public (non-loopback) URLs are left alone.
    """
    site = config.site
    configured = urlsplit(site.base_url)
    if configured.hostname not in LOOPBACK_HOSTS:
        return config
    old_origin, new_origin = f"{configured.scheme}://{configured.netloc}", listen_url(host, port)
    if old_origin == new_origin:
        return config

    def moved(url: str) -> str:
        return new_origin + url[len(old_origin):] if url.startswith(old_origin) else url

    log.info("demo: site URLs follow the listening address %s (the config says %s)", new_origin, old_origin)
    new_site = dataclasses.replace(site, base_url=moved(site.base_url), return_url=moved(site.return_url))
    return dataclasses.replace(config, site=new_site)


def with_storefront(config: Config) -> Config:
    """The config with the demo storefront on: the demo is for clicking through a shop."""
    if config.site.storefront:
        return config
    return dataclasses.replace(config, site=dataclasses.replace(config.site, storefront=True))


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

    active_payment = [m for m in table.payment.values() if m.active]
    active_shipping = [m for m in table.shipping.values() if m.active]
    return {
        "token": token,
        "customer_id": customer_id,
        "address_id": address_id,
        "products": {name: p["_id"] for name, p in products.items()},
        # One checkout line per payment flow the config offers, so both can be tried.
        "payment_methods": {flow: next((m.id for m in active_payment if m.provider.flow == flow), None)
                            for flow in ("direct", "redirect")},
        "payment_method": active_payment[0].id if active_payment else 1,
        "shipping_method": active_shipping[0].id if active_shipping else 1,
    }


def demo_text(seeded: dict, base_url: str, *, admin_token_set: bool = True) -> str:
    token = seeded["token"]
    auth = shlex.quote(f"Authorization: Token {token}")

    def checkout(payment_method: int) -> str:
        body = (f'{{"address": {seeded["address_id"]}, "payment_method": {payment_method}, '
                f'"shipping_method": {seeded["shipping_method"]}, "notes": "Please deliver after 5 PM"}}')
        return (f'curl -X POST "{base_url}/api/shop/checkout/cart" -H {auth} '
                f"-H 'Content-Type: application/json' -d '{body}'")

    flows = seeded.get("payment_methods") or {}
    direct, redirect = flows.get("direct"), flows.get("redirect")
    lines = [
        "",
        f"Demo shop ready: open {base_url}/ in a browser (signed in as the demo customer).",
        "",
        "The demo customer's token (each run makes a new one):",
        f"DEMO_TOKEN={token}",
        "",
        "# the demo customer's cart",
        f"curl -s {base_url}/api/shop/cart -H {auth}",
        "# the payment and shipping methods this cart and address can use",
        f"curl -s '{base_url}/api/shop/checkout/methods?address={seeded['address_id']}' -H {auth}",
    ]
    if direct is None and redirect is None:
        lines += ["# check out (the seed page's request)", checkout(seeded["payment_method"])]
    if direct is not None:
        lines += [f"# check out, paying on delivery (payment method {direct}): answers {{\"order_key\": ...}}",
                  checkout(direct)]
    if redirect is not None:
        lines += [(f"# {'or ' if direct is not None else ''}check out with a redirect payment (payment method "
                   f"{redirect}): answers {{\"next_step\": URL}}; open it in a browser and press Pay"),
                  checkout(redirect)]
    lines += [
        "# your orders and their status",
        f"curl -s {base_url}/api/shop/orders -H {auth}",
        "",
        "Both flows step by step: docs/checkout.md. " + (
            "Admin API: Authorization: Token $CHECKOUT_ADMIN_TOKEN." if admin_token_set else
            "The admin API is closed: set CHECKOUT_ADMIN_TOKEN to use it."),
        "",
    ]
    return "\n".join(lines)


def print_demo(seeded: dict, base_url: str) -> None:
    admin_token_set = bool(os.environ.get("CHECKOUT_ADMIN_TOKEN"))
    print(demo_text(seeded, base_url, admin_token_set=admin_token_set), flush=True)
