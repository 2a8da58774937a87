"""The checkout flow: lock the customer, repeat or place the order, reserve, start its payment.

`checkout_cart` is the whole of POST /api/shop/checkout/cart below HTTP. It answers
`(status, body)` or raises `CheckoutError(status, message, fields)`. A failure before the
order's payment is recorded gives every unit back (at once, or through the reconciler) and
leaves the cart as it was; once it is recorded, the answer is fixed and nothing raises.
The parts: `checkout_lock` (the lock, its time limits), `keyed_checkout` (Idempotency-Key),
`repeat_checkout` (a repeat of an unchanged cart), `checkout_rules` (the six rules),
`order_document`, `return_tokens`, `checkout_answers`.
"""

from __future__ import annotations

import dataclasses
import logging

from checkout_server import clock
from checkout_server.checkout import idempotency as keyed_checkout
from checkout_server.checkout import lock as checkout_lock
from checkout_server.checkout.answers import CheckoutError, answer_for, finish_paid
from checkout_server.checkout.cart import load_cart
from checkout_server.checkout.lock import CheckoutLock
from checkout_server.checkout.order import build_order
from checkout_server.checkout.repeat import checkout_fingerprint, repeat_answer
from checkout_server.checkout.rules import (
    recorded_holds,
    refusal,
    short_message,
    unpaid_holds,
    unpaid_limits,
    validate,
)
from checkout_server.observability import logs, metrics
from checkout_server.payments import provider_calls
from checkout_server.payments.provider_calls import (
    GatewayTrouble,
    ProviderCallError,
    ProviderRefusal,
)
from checkout_server.payments.return_tokens import new_return_token, payment_urls
from checkout_server.plugin.providers import PaymentStart, PaymentUrls
from checkout_server.stock import reservations
from checkout_server.storage.models import LIVE_STATUSES, Order, OrderStatus, StockState

log = logging.getLogger(__name__)


async def checkout_cart(storage, table, customer: dict, request: dict,
                        idempotency_key: str | None = None, *, locked: bool = False,
                        sent: dict | None = None, reverse_url) -> tuple[int, dict]:
    """Run one checkout for `customer` (as authenticated) with the validated `request`.

    `sent`: the body as the client sent it (parsed, before validation cleaned it), which a
    repeated `idempotency_key` is compared with; `request` when not given.

    `locked`: `customer` came from `checkout_lock.lock_customer_by_token`, so this checkout
    already holds the lock (only without an `idempotency_key`: a keyed request is looked up
    before it takes the lock, so that a replay never waits on one).

    `reverse_url(name, *args)`: the application's, for the URLs handed to the gateway.
    """
    if locked and idempotency_key is not None:
        raise ValueError("a keyed checkout takes its lock after its key is claimed")
    if idempotency_key is None:
        return await _checkout_once(storage, table, customer, request, reverse_url, locked)

    async def run(key_id: str) -> tuple[int, dict]:
        return await _checkout_once(storage, table, customer, request, reverse_url, key_id=key_id)

    return await keyed_checkout.checkout_with_key(storage, customer, request if sent is None else sent,
                                                  idempotency_key, run,
                                                  max_keys=table.site.idempotency_keys_per_customer)


async def _checkout_once(storage, table, customer: dict, request: dict, reverse_url, locked: bool = False,
                         key_id: str | None = None) -> tuple[int, dict]:
    if not locked:
        # The lock's read is the checkout's read of the customer: fresh, and taken under the lock.
        customer = await checkout_lock.lock_customer(storage, customer["_id"])
        if customer is None:
            raise CheckoutError(409, "a checkout of this cart is already in progress; try again in a moment")
    lock = CheckoutLock(storage, customer)
    last_checkout = None
    try:
        fingerprint = checkout_fingerprint(customer)
        answer = await repeat_answer(storage, table, lock, fingerprint, request)
        if answer is not None:
            return 200, answer
        holds = await unpaid_holds(storage, customer, table.site)
        body, order_key = await place_order(storage, table, lock, request, reverse_url, key_id=key_id, holds=holds)
        # Direct orders too: if clearing their cart failed, a repeat must find the order.
        last_checkout = {"fingerprint": fingerprint, "order_key": order_key,
                         "unpaid": recorded_holds(holds, order_key, customer)}
        return 200, body
    finally:
        # Never replaces the answer (or the error) computed above.
        await lock.release_quietly(last_checkout)


async def place_order(storage, table, lock: CheckoutLock, request: dict, reverse_url,
                      key_id: str | None = None, holds: dict[str, int] | None = None) -> tuple[dict, str]:
    """Validate, create the order, reserve, start the payment (for `lock.customer`).

    `holds`: the customer's orders that may be waiting for payment (`rules.unpaid_holds`),
    for the limits per customer; None checks none.

    Returns (answer, order key). `key_id`: the Idempotency-Key claim this checkout runs
    under; the order is named on it as soon as it exists. Once the order's payment is
    recorded (HOLD with its next step, or PROCESSING) the answer is fixed: nothing after
    that raises.
    """
    customer = lock.customer
    site = table.site
    loaded = await load_cart(storage, customer, site.currency)
    problems, order_request = validate(customer, loaded, request, table)
    if holds is not None:
        problems.update(unpaid_limits(holds, loaded, site))
    if problems:
        raise refusal(problems)
    payment = order_request.payment

    now = clock.utcnow()
    order_key = await storage.orders.next_order_key(now.year)
    logs.bind(order_key=order_key)
    return_token, return_token_hash = new_return_token()
    order = await storage.orders.insert(build_order(order_key, order_request, site, now, return_token_hash))
    if key_id is not None:
        await storage.idempotency.attach_order(key_id, order_key)
    await reservations.fault_point("order_inserted")
    lines = loaded.quantities
    short = await reservations.reserve_lines(storage, order_key, lines)
    if short:
        metrics.stock_refused(len(short), "reservation")
        # No order exists for a cart that failed the stock rule.
        await storage.orders.delete(order_key, {"stock": StockState.RESERVING})
        names = {line.product: line.name for line in loaded.cart.lines}
        raise refusal({"cart": [short_message(names[p], p, lines[p], left) for p, left in short.items()]})
    await reservations.fault_point("stock_reserved")

    start = await _start_payment(storage, payment, order, payment_urls(site, reverse_url, payment.id, order_key, return_token))
    await reservations.fault_point("payment_started")
    record = dataclasses.replace(order.payment, recorded=True, reference=start.reference,
                                 next_step=start.redirect_url, data=dict(start.data or {}))
    changes = {"stock": StockState.HELD, "payment": record.to_document()}
    history = None
    if start.settled:
        changes["status"] = OrderStatus.PROCESSING
        history = {"status": OrderStatus.PROCESSING, "reason": f"settled by {payment.provider.name}"}
    recorded = await _record_payment(storage, order, changes, history)
    if recorded is None:
        # The reconciler gave this checkout up as stalled and cancelled the order.
        await storage.products.release(order_key, lines)
        raise CheckoutError(500, "the checkout took too long and was cancelled; please try again")
    log.info("order %s: %d units, total %d %s, %s (payment method %s)", order_key, sum(lines.values()),
             order.total, order.currency,
             "PROCESSING: settled at once" if start.settled else "HOLD: awaiting payment", payment.id)
    if start.settled:
        await finish_paid(storage, recorded, lock)
    return answer_for(recorded), order_key


async def _record_payment(storage, order: Order, changes: dict, history: dict | None) -> Order | None:
    """The order leaves `reserving` with its payment recorded: the order as written, or None
    if the reconciler cancelled it first.

    A write whose reply was lost (the connection dropped after the server applied it) is
    told apart by reading the order back: if it is recorded, the checkout answers with it.
    """
    try:
        return await storage.orders.transition(order.key, {"stock": StockState.RESERVING}, changes, history,
                                               current=order)
    except Exception:
        current = await storage.orders.get(order.key)  # failing too: the original error stands as cause
        if (current is not None and current.status in LIVE_STATUSES
                and current.stock != StockState.RESERVING and current.payment.recorded
                and current.payment.attempt == order.payment.attempt):
            log.warning("order %s: its payment was recorded, though the write's answer was lost", order.key)
            return current
        raise


async def _start_payment(storage, payment, order: Order, urls: PaymentUrls) -> PaymentStart:
    """The payment's start (cut off within the checkout lock), or cancel the order (units
    back, cart untouched) and raise 503/500. The failure is logged by provider_calls."""
    method = f"payment method {payment.id}: {payment.title}"
    try:
        return await provider_calls.start(payment, order, urls, timeout=checkout_lock.start_deadline())
    except GatewayTrouble as exc:
        reason = f"payment service unavailable: {exc.reason}"
        error = CheckoutError(503, f"the payment service is unavailable, please try again later ({method})")
    except ProviderRefusal as exc:
        # The provider (or its gateway, with a 4xx) refused this payment; its message is safe to show.
        reason = f"payment refused: {exc.reason}"
        error = CheckoutError(503, f"the payment service could not start the payment: {exc.reason} ({method})")
    except ProviderCallError:
        reason = "payment could not be started: internal error"
        error = CheckoutError(500, "internal server error: the payment could not be started; nothing was charged")
    await reservations.cancel_order(storage, order, {"stock": StockState.RESERVING}, reason)
    raise error
