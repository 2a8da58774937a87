"""The seed page's six checkout rules and their messages, and the limits per customer.

The cart's lines and their stock, the profile, the address, the payment method, the
shipping method, and what the methods say about this cart. Every failing rule is reported
together, as one 400 whose `fields` follow `RULE_FIELDS`. The limits per customer
(`[site]` in the config) are reported the same way, each under its setting's name.
"""

from __future__ import annotations

import dataclasses

from checkout_server.checkout.answers import CheckoutError
from checkout_server.checkout.cart import LoadedCart, to_address
from checkout_server.checkout.order import OrderRequest
from checkout_server.methods.availability import payment_support, shipping_offer
from checkout_server.observability import metrics
from checkout_server.plugin.providers import MAX_MONEY
from checkout_server.storage.customers import PROFILE_FIELDS

# The order the rules are reported in, whichever was checked first.
RULE_FIELDS = ("cart", "profile", "address", "payment_method", "shipping_method",
               "unpaid_orders_per_customer", "unpaid_units_per_customer")


def validate(customer: dict, loaded: LoadedCart, request: dict, table) -> tuple[dict, OrderRequest | None]:
    """Check every rule: (problems {field: [messages]}, None), or ({}, the order's request).

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
            metrics.stock_refused(1, "validation")

    missing = [name for name in PROFILE_FIELDS if not customer.get(name)]
    if missing:
        refuse("profile", f"your profile is incomplete: set {', '.join(missing)} (PATCH /api/shop/profile)")

    address_doc, payment, shipping = request_choices(customer, request, table, refuse)
    if not cart.lines:
        return problems, None

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
    if problems:
        return problems, None
    return problems, OrderRequest(customer=customer, cart=cart, address=address_doc, payment=payment,
                                  shipping=shipping, shipping_cost=cost, notes=request.get("notes") or "")


def cart_units(customer: dict) -> int:
    """How many units the customer's cart holds (every line, as stored)."""
    return sum(int(q) for q in (customer.get("cart") or {}).values() if int(q) > 0)


async def unpaid_holds(storage, customer: dict, site) -> dict[str, int]:
    """{order key: units} of the customer's orders that may be waiting for payment: exact
    whenever a limit per customer could be reached, else as recorded (no database read).

    Each checkout that places an order records it, with what it knew already, in
    `last_checkout.unpaid` (`recorded_holds`); paid, cancelled and expired orders stay there
    until a checkout near a limit reads the orders on HOLD instead and records those. So
    the record never leaves out an order (one whose checkout could not release its lock
    aside), and the common checkout, far from every limit, costs no extra round trip.
    """
    last = customer.get("last_checkout") or {}
    # A last checkout from before this record existed may have left orders on HOLD: read them.
    recorded = last.get("unpaid", {} if not last else None)
    if (recorded is not None and len(recorded) < site.unpaid_orders_per_customer
            and sum(recorded.values()) + cart_units(customer) <= site.unpaid_units_per_customer):
        return dict(recorded)
    held = await storage.orders.awaiting_payment(customer["_id"], limit=site.unpaid_orders_per_customer)
    return {order["_id"]: sum(int(item.get("quantity", 0)) for item in order.get("items") or [])
            for order in held}


def recorded_holds(holds: dict[str, int], order_key: str, customer: dict) -> dict[str, int]:
    """What `last_checkout.unpaid` records after a checkout placed `order_key`."""
    return {**holds, order_key: cart_units(customer)}


def unpaid_limits(holds: dict[str, int], loaded: LoadedCart, site) -> dict[str, list[str]]:
    """The limits on what one customer holds unpaid, for a new order of `loaded`'s cart.

    Orders on HOLD keep their units from everyone else until paid or expired: without a
    bound one customer could hold a product's whole stock. `holds` is `unpaid_holds`; the
    checkout lock keeps two checkouts of one customer from both passing. Returns
    {setting name: [message]} for the limit the new order would pass.
    """
    units = sum(loaded.quantities.values())
    if not units:
        return {}
    most = site.unpaid_orders_per_customer
    if len(holds) >= most:
        message = (f"you have {len(holds)} orders waiting for payment, the most one customer may have "
                   f"(unpaid_orders_per_customer = {most}): pay one, or let it expire, before placing another")
        return {"unpaid_orders_per_customer": [message]}
    held_units = sum(holds.values())
    if held_units + units > site.unpaid_units_per_customer:
        message = (f"this order's {units} units and the {held_units} held by your orders waiting for payment "
                   f"would be more than one customer may hold unpaid (unpaid_units_per_customer = "
                   f"{site.unpaid_units_per_customer}): pay an order, let it expire, or order fewer")
        return {"unpaid_units_per_customer": [message]}
    return {}


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
