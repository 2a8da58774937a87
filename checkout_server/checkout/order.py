"""The order document a checkout inserts (HOLD, stock `reserving`): see docs/architecture.md."""

from __future__ import annotations

import secrets
from datetime import timedelta

from checkout_server.storage.customers import ADDRESS_FIELDS


def build_order(order_key, customer, loaded, request, address_doc, payment, shipping, cost, site, now) -> dict:
    """The new order for a validated checkout, its address and billing a snapshot of the customer's."""
    cart = loaded.cart
    name = f"{customer.get('first_name') or ''} {customer.get('last_name') or ''}".strip()
    address = {k: address_doc.get(k, "") for k in ADDRESS_FIELDS}
    return {
        "_id": order_key,
        "customer": customer["_id"],
        "status": "HOLD",
        "stock": "reserving",
        "items": [{"product": line.product, "name": line.name, "quantity": line.quantity,
                   "unit_price": line.unit_price, "line_total": line.line_total} for line in cart.lines],
        "subtotal": cart.subtotal,
        "shipping_cost": cost,
        "total": cart.subtotal + cost,
        "currency": site.currency,
        "payment_method": payment.id,
        "shipping_method": shipping.id,
        "address": {"name": name, **address},
        "billing": {"name": name, "email": customer.get("email"), "phone": customer.get("phone"),
                    "address": address},
        "notes": request.get("notes") or "",
        "created_at": now,
        "updated_at": now,
        "hold_until": now + timedelta(minutes=site.hold_minutes),
        "history": [{"status": "HOLD", "at": now, "reason": "order created"}],
        "payment": {"provider": payment.provider.name, "flow": payment.provider.flow,
                    "title": payment.title, "attempt": secrets.token_hex(8)},  # OrderInfo.attempt_id
        "shipping": {"provider": shipping.provider.name, "title": shipping.title},
    }
