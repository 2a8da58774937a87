"""The order model: its states (defined once), and the typed order storage hands out.

An order is stored as one document (shape in docs/checkout.md); `Order.from_document` and
`Order.to_document` are the only code that knows the field names, and a round trip keeps
every field, known or not, so documents written by older versions load and stay whole.
The rest of the service reads attributes (`order.status`, `order.payment.next_step`).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class OrderStatus(enum.StrEnum):
    """The public lifecycle: HOLD until the payment is decided, then one of the others."""

    HOLD = "HOLD"
    PROCESSING = "PROCESSING"
    CANCELLED = "CANCELLED"


class StockState(enum.StrEnum):
    """The stock saga's state of an order's units: reserving -> held -> committed | released;
    a paid order an admin cancels: committed -> returning -> returned (units taken back)."""

    RESERVING = "reserving"
    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"
    RETURNING = "returning"
    RETURNED = "returned"


# An order whose payment may still be decided or is decided paid: it holds its units.
LIVE_STATUSES = (OrderStatus.HOLD, OrderStatus.PROCESSING)


@dataclass(frozen=True)
class OrderItem:
    product: int
    name: str
    quantity: int
    unit_price: int
    line_total: int


@dataclass(frozen=True)
class PaymentRecord:
    """The order's payment: who takes it, and (once `recorded`) what its start answered."""

    provider: str
    flow: str
    title: str
    attempt: str = ""  # OrderInfo.attempt_id: one per order, random
    recorded: bool = False  # the checkout wrote the start's answer (reference, next_step, data)
    reference: str | None = None
    next_step: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    refund_needed: bool = False
    captured: Mapping[str, Any] | None = None  # {amount, currency} a settled payment took
    extra: Mapping[str, Any] = field(default_factory=dict)  # fields this version does not know (refunds)
    # The fields the stored document had (None: built here, so it has the full shape).
    present: frozenset[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_document(cls, doc: Mapping[str, Any] | None) -> PaymentRecord:
        doc = dict(doc or {})
        known = {name: doc.pop(name) for name in _PAYMENT_FIELDS if name in doc}
        return cls(provider=known.get("provider") or "", flow=known.get("flow") or "",
                   title=known.get("title") or "", attempt=str(known.get("attempt") or ""),
                   recorded="next_step" in known, reference=known.get("reference"),
                   next_step=known.get("next_step"), data=dict(known.get("data") or {}),
                   refund_needed=bool(known.get("refund_needed")), captured=known.get("captured"),
                   extra=doc, present=frozenset(known))

    def to_document(self) -> dict:
        values = {"provider": self.provider, "flow": self.flow, "title": self.title, "attempt": self.attempt,
                  "reference": self.reference, "next_step": self.next_step, "data": dict(self.data),
                  "refund_needed": self.refund_needed, "captured": self.captured}
        if self.present is None:  # built here: what the checkout has always written
            keep = {"provider", "flow", "title", "attempt"}
        else:
            keep = set(self.present)
        if self.recorded:
            keep |= {"reference", "next_step", "data"}
        return {**self.extra, **_written(values, keep)}


_PAYMENT_FIELDS = ("provider", "flow", "title", "attempt", "reference", "next_step", "data", "refund_needed",
                   "captured")


@dataclass(frozen=True)
class Order:
    """One order, as storage reads and writes it. Build a new one with `checkout.order.build_order`."""

    key: str
    customer: int
    status: OrderStatus
    stock: StockState
    items: tuple[OrderItem, ...]
    subtotal: int
    shipping_cost: int
    total: int
    currency: str
    payment_method: int
    shipping_method: int
    payment: PaymentRecord
    address: Mapping[str, Any] = field(default_factory=dict)
    billing: Mapping[str, Any] = field(default_factory=dict)
    shipping: Mapping[str, Any] = field(default_factory=dict)  # {provider, title}
    notes: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    hold_until: datetime | None = None
    history: tuple[Mapping[str, Any], ...] = ()  # {status, at, reason}
    return_token: str | None = None  # the hash of the return URL's token
    events: tuple[str, ...] = ()  # notification event ids already handled
    discard: bool = False  # a checkout that never answered: deleted once its units are back
    rev: int = 0  # the revision `Orders.transition` guards on
    extra: Mapping[str, Any] = field(default_factory=dict)  # fields this version does not know
    # The fields the stored document had (None: built here, so it has the full shape).
    present: frozenset[str] | None = field(default=None, compare=False, repr=False)

    @property
    def lines(self) -> dict[int, int]:
        """{product: quantity} of the order's items."""
        lines: dict[int, int] = {}
        for item in self.items:
            lines[item.product] = lines.get(item.product, 0) + item.quantity
        return lines

    @property
    def unit_count(self) -> int:
        return sum(item.quantity for item in self.items)

    def replace(self, **changes) -> Order:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Order:
        rest = dict(doc)
        known = {name: rest.pop(name) for name in _ORDER_FIELDS if name in rest}
        get = known.get
        return cls(
            key=get("_id"), customer=get("customer"),
            status=_enum(OrderStatus, get("status")), stock=_enum(StockState, get("stock")),
            items=tuple(OrderItem(product=int(i["product"]), name=i.get("name", ""), quantity=int(i["quantity"]),
                                  unit_price=int(i.get("unit_price", 0)), line_total=int(i.get("line_total", 0)))
                        for i in get("items") or ()),
            subtotal=int(get("subtotal") or 0), shipping_cost=int(get("shipping_cost") or 0),
            total=int(get("total") or 0), currency=get("currency") or "",
            payment_method=get("payment_method"), shipping_method=get("shipping_method"),
            payment=PaymentRecord.from_document(get("payment")),
            address=dict(get("address") or {}), billing=dict(get("billing") or {}),
            shipping=dict(get("shipping") or {}), notes=get("notes") or "",
            created_at=get("created_at"), updated_at=get("updated_at"), hold_until=get("hold_until"),
            history=tuple(dict(h) for h in get("history") or ()), return_token=get("return_token"),
            events=tuple(str(e) for e in get("events") or ()), discard=bool(get("discard")),
            rev=int(get("rev") or 0), extra=rest, present=frozenset(known),
        )

    def to_document(self) -> dict:
        """The stored shape: the fields as every version wrote them, unknown ones kept."""
        values = {
            "_id": self.key,
            "customer": self.customer,
            "status": str(self.status),
            "stock": str(self.stock),
            "items": [dataclasses.asdict(item) for item in self.items],
            "subtotal": self.subtotal,
            "shipping_cost": self.shipping_cost,
            "total": self.total,
            "currency": self.currency,
            "payment_method": self.payment_method,
            "shipping_method": self.shipping_method,
            "address": dict(self.address),
            "billing": dict(self.billing),
            "notes": self.notes,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "hold_until": self.hold_until,
            "history": [dict(h) for h in self.history],
            "payment": self.payment.to_document(),
            "shipping": dict(self.shipping),
            "rev": self.rev,
            "events": list(self.events),
            "return_token": self.return_token,
            "discard": self.discard,
        }
        keep = set(values) - {"return_token", "discard"} if self.present is None else set(self.present)
        return {**self.extra, **_written(values, keep)}

    # A read-only view in the stored shape (`order["status"]`, `order.get("payment")`), for
    # tests and tools that speak documents; the service itself reads the attributes.
    def __getitem__(self, name: str):
        return self.to_document()[name]

    def get(self, name: str, default=None):
        return self.to_document().get(name, default)

    def keys(self):
        return self.to_document().keys()


_ORDER_FIELDS = ("_id", "customer", "status", "stock", "items", "subtotal", "shipping_cost", "total", "currency",
                 "payment_method", "shipping_method", "payment", "address", "billing", "shipping", "notes",
                 "created_at", "updated_at", "hold_until", "history", "return_token", "events", "discard", "rev")


def _written(values: dict, keep: set) -> dict:
    """The fields of `values` a document carries: those in `keep`, and any other that is set
    (so an older document stays as it was, and a field set since is not lost)."""
    return {name: value for name, value in values.items()
            if name in keep or value not in (None, "", 0, False, [], {})}


def _enum(kind, value):
    """`value` as a member of `kind`; an unknown value (a newer version's) is kept as it is."""
    try:
        return kind(value)
    except ValueError:
        return value
