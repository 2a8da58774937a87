"""The order a checkout inserts (HOLD, stock `reserving`): see docs/architecture.md."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from checkout_server.plugin.providers import Cart
from checkout_server.storage.customers import ADDRESS_FIELDS
from checkout_server.storage.models import (
    Order,
    OrderItem,
    OrderStatus,
    PaymentRecord,
    StockState,
)


@dataclass(frozen=True)
class OrderRequest:
    """What a checkout that passed every rule asks for: the order's inputs, all validated."""

    customer: dict  # the customer document, as read under the checkout lock
    cart: Cart
    address: dict  # one of the customer's addresses (a document)
    payment: object  # the payment method (methods.table.BoundMethod)
    shipping: object  # the shipping method (methods.table.BoundMethod)
    shipping_cost: int
    notes: str = ""


def build_order(key: str, request: OrderRequest, site, now: datetime, return_token_hash: str) -> Order:
    """The new order for `request`, its address and billing a snapshot of the customer's."""
    customer, cart, payment, shipping = request.customer, request.cart, request.payment, request.shipping
    name = f"{customer.get('first_name') or ''} {customer.get('last_name') or ''}".strip()
    address = {k: request.address.get(k, "") for k in ADDRESS_FIELDS}
    return Order(
        key=key,
        customer=customer["_id"],
        status=OrderStatus.HOLD,
        stock=StockState.RESERVING,
        items=tuple(OrderItem(product=line.product, name=line.name, quantity=line.quantity,
                              unit_price=line.unit_price, line_total=line.line_total) for line in cart.lines),
        subtotal=cart.subtotal,
        shipping_cost=request.shipping_cost,
        total=cart.subtotal + request.shipping_cost,
        currency=site.currency,
        payment_method=payment.id,
        shipping_method=shipping.id,
        address={"name": name, **address},
        billing={"name": name, "email": customer.get("email"), "phone": customer.get("phone"),
                 "address": address},
        notes=request.notes,
        created_at=now,
        updated_at=now,
        hold_until=now + timedelta(minutes=site.hold_minutes),
        history=({"status": str(OrderStatus.HOLD), "at": now, "reason": "order created"},),
        payment=PaymentRecord(provider=payment.provider.name, flow=payment.provider.flow,
                              title=payment.title, attempt=secrets.token_hex(8)),
        shipping={"provider": shipping.provider.name, "title": shipping.title},
        return_token=return_token_hash,
    )
