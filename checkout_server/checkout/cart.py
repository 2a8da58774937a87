"""A customer's cart as the checkout and the providers see it.

The customer document stores only `{"<product id>": quantity}`; names, prices, weights and
the digital flag are always read fresh from the products, so a cart never shows a stale
price and an order is priced from the catalog, never from the client.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from checkout_server.plugin.providers import Address, Cart, CartLine

__all__ = ["LoadedCart", "cart_json", "load_cart", "to_address"]


@dataclass(frozen=True)
class LoadedCart:
    cart: Cart
    # Every product doc read for this cart (including `stock`), by id.
    products: dict[int, dict] = field(default_factory=dict)
    # Product ids in the cart that no longer exist or are inactive (not in `cart.lines`).
    unavailable: list[int] = field(default_factory=list)

    @property
    def quantities(self) -> dict[int, int]:
        """{product: quantity} of the available lines."""
        return {line.product: line.quantity for line in self.cart.lines}


async def load_cart(storage, customer: dict, currency: str) -> LoadedCart:
    """Price `customer`'s cart from the current catalog, in one products read."""
    raw = customer.get("cart") or {}
    quantities = {int(product): int(quantity) for product, quantity in raw.items() if int(quantity) > 0}
    products = await storage.products.get_many(quantities) if quantities else {}
    lines: list[CartLine] = []
    unavailable: list[int] = []
    for product_id, quantity in quantities.items():
        product = products.get(product_id)
        if product is None or not product.get("active", True):
            unavailable.append(product_id)
            continue
        price = int(product["price"])
        lines.append(CartLine(
            product=product_id,
            name=product["name"],
            quantity=quantity,
            unit_price=price,
            line_total=price * quantity,
            digital=bool(product.get("digital", False)),
            weight=int(product.get("weight", 0)),
        ))
    cart = Cart(customer_id=customer["_id"], lines=tuple(lines), currency=currency)
    return LoadedCart(cart=cart, products=products, unavailable=unavailable)


def to_address(doc: dict) -> Address:
    """A stored address (an entry of `customer["addresses"]`) as a providers.Address."""
    return Address(
        id=int(doc["id"]),
        line1=doc["line1"],
        city=doc["city"],
        postal_code=doc["postal_code"],
        country=doc["country"],
        line2=doc.get("line2") or "",
    )


def cart_json(cart: Cart) -> dict:
    """The cart as the API shows it."""
    return {
        "items": [
            {
                "product": line.product,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "line_total": line.line_total,
            }
            for line in cart.lines
        ],
        "subtotal": cart.subtotal,
        "currency": cart.currency,
    }
