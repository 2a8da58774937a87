"""The order model: a stored document loads as an `Order` and writes back exactly as it was."""

from __future__ import annotations

from datetime import UTC, datetime

from checkout_server.storage.models import Order, OrderStatus, PaymentRecord, StockState

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# An order as the previous version wrote it (before the model existed), payment recorded.
STORED = {
    "_id": "ORD-2026-000001", "customer": 7, "status": "HOLD", "stock": "held",
    "items": [{"product": 3, "name": "Mug", "quantity": 2, "unit_price": 1250, "line_total": 2500}],
    "subtotal": 2500, "shipping_cost": 490, "total": 2990, "currency": "EUR",
    "payment_method": 1, "shipping_method": 2,
    "address": {"name": "Ada L", "id": 1, "line1": "1 Main St", "line2": "", "city": "Berlin",
                "postal_code": "10115", "country": "DE"},
    "billing": {"name": "Ada L", "email": "ada@example.com", "phone": "+49", "address": {"id": 1}},
    "notes": "", "created_at": T, "updated_at": T, "hold_until": T,
    "history": [{"status": "HOLD", "at": T, "reason": "order created"}],
    "payment": {"provider": "test_redirect", "flow": "redirect", "title": "Card", "attempt": "ab12",
                "reference": "pay_1", "next_step": "https://gateway.test/pay_1", "data": {"k": "v"}},
    "shipping": {"provider": "flat", "title": "Flat"},
    "return_token": "f" * 64, "rev": 3, "events": ["evt_1"],
}


def test_a_stored_order_loads_typed_and_writes_back_unchanged():
    order = Order.from_document(STORED)
    assert order.key == "ORD-2026-000001" and order.status is OrderStatus.HOLD and order.stock is StockState.HELD
    assert order.payment.recorded and order.payment.next_step == "https://gateway.test/pay_1"
    assert order.lines == {3: 2} and order.unit_count == 2 and order.events == ("evt_1",)
    assert order.to_document() == STORED


def test_an_unrecorded_payment_and_unknown_fields_survive_a_round_trip():
    doc = {**STORED, "payment": {"provider": "p", "flow": "direct", "title": "COD", "attempt": "x"},
           "stock": "reserving", "some_future_field": {"a": 1}, "discard": True}
    order = Order.from_document(doc)
    assert not order.payment.recorded and order.discard
    assert order.to_document() == doc


def test_a_state_this_version_does_not_know_is_kept():
    order = Order.from_document({**STORED, "status": "REFUNDED"})
    assert order.status == "REFUNDED" and order.to_document()["status"] == "REFUNDED"


def test_a_built_payment_record_has_the_checkouts_shape():
    record = PaymentRecord(provider="p", flow="redirect", title="Card", attempt="a1")
    assert record.to_document() == {"provider": "p", "flow": "redirect", "title": "Card", "attempt": "a1"}
    recorded = PaymentRecord(provider="p", flow="direct", title="COD", attempt="a1", recorded=True)
    assert recorded.to_document() == {"provider": "p", "flow": "direct", "title": "COD", "attempt": "a1",
                                      "reference": None, "next_step": None, "data": {}}
