"""The seed page's six checkout rules and their messages.

The cart's lines and their stock, the profile, the address, the payment method, the
shipping method, and what the methods say about this cart. Every failing rule is reported
together, as one 400 whose `fields` follow `RULE_FIELDS`.
"""

from __future__ import annotations

import dataclasses

from checkout_server.checkout.answers import CheckoutError
from checkout_server.checkout.cart import LoadedCart, to_address
from checkout_server.methods.availability import payment_support, shipping_offer
from checkout_server.plugin.providers import MAX_MONEY
from checkout_server.storage.customers import PROFILE_FIELDS

# The order the rules are reported in, whichever was checked first.
RULE_FIELDS = ("cart", "profile", "address", "payment_method", "shipping_method")


def validate(customer: dict, loaded: LoadedCart, request: dict, table):
    """Check every rule; returns (problems {field: [messages]}, address doc, payment, shipping, cost).

    All failing rules are reported together, an empty cart's too: the profile, the address
    and whether the methods exist and are active need no cart. Whether a method can serve
    the cart is asked only of a cart with lines.
    """
    problems: dict[str, list[str]] = {}

    def refuse(field: str, message: str) -> None:
        problems.setdefault(field, []).append(message)

    cart = loaded.cart
    for product_id in loaded.unavailable:
        refuse("cart", f"product {product_id} in your cart is no longer available; remove it")
    if not cart.lines and not loaded.unavailable:
        refuse("cart", "your cart is empty")
    for line in cart.lines:
        left = int(loaded.products[line.product].get("stock", 0))
        if left < line.quantity:
            refuse("cart", short_message(line.name, line.product, line.quantity, left))

    missing = [name for name in PROFILE_FIELDS if not customer.get(name)]
    if missing:
        refuse("profile", f"your profile is incomplete: set {', '.join(missing)} (PATCH /api/shop/profile)")

    address_doc, payment, shipping = request_choices(customer, request, table, refuse)
    if not cart.lines:
        return problems, address_doc, payment, shipping, None

    # Shipping is quoted first: the payment method is asked about what the shopper pays,
    # goods plus shipping (the methods list asked about the goods only).
    shipping_support, cost = None, None
    if shipping is not None and address_doc is not None:
        shipping_support, cost = shipping_offer(shipping, cart, to_address(address_doc))
        if not shipping_support:
            refuse("shipping_method", f"shipping method {shipping.id} ({shipping.title}) cannot be used "
                                      f"for this cart and address: {shipping_support.reason}")
    if cart.subtotal + (cost or 0) > MAX_MONEY:
        # The database stores 64-bit integers; refuse here rather than fail at the insert.
        refuse("cart", f"the order total would be more than the maximum of {MAX_MONEY} "
                       f"{cart.currency} minor units; split it into smaller orders")
    if payment is not None:
        priced = dataclasses.replace(cart, shipping_cost=cost) if cost is not None else cart
        support = payment_support(payment, priced)
        if not support:
            refuse("payment_method", f"payment method {payment.id} ({payment.title}) cannot be used "
                                     f"for this cart: {support.reason}")
    return problems, address_doc, payment, shipping, cost


def request_choices(customer: dict, request: dict, table, refuse):
    """The body's address (one of the customer's) and active methods; each one missing is refused.

    No database: the customer document and the method table are in hand.
    Returns (address doc, payment method, shipping method), None for each refused.
    """
    address_doc = (customer.get("addresses") or {}).get(str(request["address"]))
    if address_doc is None:
        refuse("address", f"address {request['address']} is not one of your addresses")
    payment = table.active_payment(request["payment_method"])
    if payment is None:
        refuse("payment_method", f"payment method {request['payment_method']} is not available")
    shipping = table.active_shipping(request["shipping_method"])
    if shipping is None:
        refuse("shipping_method", f"shipping method {request['shipping_method']} is not available")
    return address_doc, payment, shipping


def short_message(name: str, product_id: int, wanted: int, left: int) -> str:
    """The stock rule's message for one cart line."""
    if left <= 0:
        return f"{name} (product {product_id}) is out of stock"
    return f"not enough stock for {name} (product {product_id}): {left} left, {wanted} in your cart"


def refusal(problems: dict[str, list[str]]) -> CheckoutError:
    """The 400 for `problems` ({field: [messages]}), its fields in `RULE_FIELDS` order."""
    ordered = {field: problems[field] for field in sorted(problems, key=RULE_FIELDS.index)}
    messages = [message for field in ordered.values() for message in field]
    return CheckoutError(400, "; ".join(messages), ordered)
