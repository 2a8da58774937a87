"""The checkout: validate the cart, create the order, reserve its stock, start its payment.

`checkout_cart` is the whole of POST /api/shop/checkout/cart below HTTP. It answers
`(status, body)` or raises `CheckoutError(status, message, fields)`. A failure before the
order's payment is recorded gives every unit back (at once, or through the reconciler) and
leaves the cart as it was; once it is recorded, the answer is fixed and nothing raises.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import logging
import secrets
from datetime import UTC, datetime, timedelta

from . import reservations
from .availability import payment_support, shipping_offer
from .carts import LoadedCart, load_cart, to_address
from .providers import (
    MAX_MONEY,
    GatewayError,
    PaymentStart,
    PaymentState,
    PaymentUrls,
    ProviderError,
)
from .settlement import (
    FAILED,
    PAID,
    ask_gateway,
    method_for,
    no_method_reason,
    order_info,
    settle,
)
from .storage.customers import ADDRESS_FIELDS, PROFILE_FIELDS

log = logging.getLogger("checkout_server.checkout")

MAX_IDEMPOTENCY_KEY = 255
# One checkout per customer at a time; a lock left by a crashed process expires after this.
# Longer than any checkout takes: the payment start is cut off after `start_deadline()`
# (2/3 of the lock; gatewayhttp.MAX_TIMEOUT keeps a gateway's calls within it), the rest is
# a few database round trips. Shorter than reservations.STALE_AFTER, so the reconciler never
# races a live checkout. An Idempotency-Key's claim has the same lease.
LOCK_SECONDS = 90.0
# A repeat checkout of an unchanged cart answers its HOLD order only while the hold has at
# least `reuse_hold_min_left` to run: a shopper sent to pay should have the time to, and the
# sweeper cancels an expired hold at its next pass. Closer to expiry the old order's gateway
# is asked first (it may have been paid, its return lost), and only an order that will never
# be paid is replaced. At most this long, and at most half the hold: with a short
# `hold_minutes` an immediate retry must still find its order.
REUSE_HOLD_MIN_LEFT = timedelta(minutes=5)


def reuse_hold_min_left(hold_minutes: int) -> timedelta:
    """How long a HOLD order must still have to run for a repeat to answer it as it is."""
    return min(REUSE_HOLD_MIN_LEFT, timedelta(minutes=hold_minutes) / 2)


def start_deadline() -> float:
    """Seconds `provider.start` may take before the checkout gives up (503): within the lock."""
    return LOCK_SECONDS * 2 / 3


class CheckoutError(Exception):
    """A checkout that ends in an error answer: `{"error": message}` (+ `fields`)."""

    def __init__(self, status: int, message: str, fields: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields

    def body(self) -> dict:
        body = {"error": self.message}
        if self.fields:
            body["fields"] = self.fields
        return body


def utcnow() -> datetime:
    """The clock (tests replace it to move the order year or hold expiry)."""
    return datetime.now(UTC)


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def checkout_fingerprint(customer: dict) -> str:
    """The cart (product -> quantity) only: a repeat of an unchanged cart has the same one.

    The body is left out on purpose (CONTRACT.md): a second checkout of an unchanged cart
    whose order is still HOLD answers with that order, whatever its notes, address or
    methods say, instead of holding the same stock twice.
    """
    cart = {str(p): int(q) for p, q in (customer.get("cart") or {}).items() if int(q) > 0}
    return _digest({"cart": cart})


class CheckoutLock:
    """One checkout's hold on its customer's checkout lock, released exactly once.

    `customer` is the customer document as read when the lock was taken: the checkout's
    one read of the customer.
    """

    def __init__(self, storage, customer: dict):
        self.storage = storage
        self.customer = customer
        self.held = True

    async def release(self, last_checkout: dict | None = None) -> None:
        if self.held:
            self.held = False
            # Guarded by the value we set: a lock that lapsed and was taken since is not ours.
            await self.storage.customers.release_checkout_lock(
                self.customer["_id"], last_checkout, as_read=self.customer,
                held=self.customer.get("checkout_lock"))

    async def release_quietly(self, last_checkout: dict | None = None) -> None:
        """`release`, logging a failure instead of raising it: the checkout's answer (or its
        own error) stands; a lock left behind lapses after LOCK_SECONDS."""
        try:
            await self.release(last_checkout)
        except Exception:
            log.exception("customer %s: could not release the checkout lock; it lapses in %g s",
                          self.customer["_id"], LOCK_SECONDS)


async def lock_customer_by_token(storage, token_hash: str) -> dict | None:
    """Authenticate and take the checkout lock in one update: the customer, or None.

    None: an unknown token or a checkout already running (`by_token_hash` tells which).
    A customer returned here is locked: pass it to `checkout_cart(..., locked=True)`.
    """
    return await storage.customers.acquire_checkout_lock_by_token(token_hash, LOCK_SECONDS)


async def checkout_cart(storage, table, customer: dict, request: dict,
                        idempotency_key: str | None = None, *, locked: bool = False) -> tuple[int, dict]:
    """Run one checkout for `customer` (as authenticated) with the validated `request`.

    `locked`: `customer` came from `lock_customer_by_token`, so this checkout already holds
    the lock (only without an `idempotency_key`: a keyed request is looked up before it
    takes the lock, so that a replay never waits on one).
    """
    if locked and idempotency_key is not None:
        raise ValueError("a keyed checkout takes its lock after its key is claimed")
    if idempotency_key is None:
        return await _checkout_once(storage, table, customer, request, locked)
    if not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise CheckoutError(400, f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
                            {"Idempotency-Key": [f"must be 1 to {MAX_IDEMPOTENCY_KEY} characters"]})
    key_id = f"{customer['_id']}:{idempotency_key}"
    request_hash = _digest(request)
    keys = storage.idempotency
    claim = await keys.try_claim(key_id, request_hash, lease_seconds=LOCK_SECONDS)
    if not claim.ours:
        existing = claim.record
        if existing is None:  # taken over by a racing retry, then purged: nothing to answer yet
            raise CheckoutError(409, "a request with this Idempotency-Key is still being processed")
        if existing.get("request_hash") != request_hash:
            raise CheckoutError(400, "this Idempotency-Key was already used with a different request body")
        if existing.get("state") != "done":
            # Still running, but if its order is recorded the answer is fixed already.
            answer = await _answer_of_claimed_order(storage, customer, existing)
            if answer is None:
                raise CheckoutError(409, "a request with this Idempotency-Key is still being processed")
            await _finish_quietly(keys, key_id, 200, answer)
            return 200, answer
        status, body = int(existing["status"]), existing["body"]
        if status >= 400:  # replayed through the same error path, byte for byte
            raise CheckoutError(status, body["error"], body.get("fields"))
        return status, body
    if claim.record is not None:
        # Taken over from a request that died: its order, if it got that far, is the answer
        # (the cart may be empty by now: checking out again would say so, for 24 hours).
        answer = await _answer_of_claimed_order(storage, customer, claim.record)
        if answer is not None:
            await _finish_quietly(keys, key_id, 200, answer)
            return 200, answer
    try:
        status, body = await _checkout_once(storage, table, customer, request, key_id=key_id)
    except CheckoutError as exc:
        # A refusal is this request's answer; a conflict or an outage is not: let a retry run.
        if exc.status == 400:
            await _finish_quietly(keys, key_id, exc.status, exc.body())
        else:
            await _forget_quietly(keys, key_id)
        raise
    except BaseException:
        await _forget_quietly(keys, key_id)
        raise
    await _finish_quietly(keys, key_id, status, body)
    return status, body


async def _answer_of_claimed_order(storage, customer: dict, record: dict) -> dict | None:
    """The answer fixed by the order a key's claim names, if that order got that far.

    That is an order whose payment is recorded and not cancelled: HOLD with its next step,
    or PROCESSING. Anything else (no order yet, still `reserving`, cancelled by the
    checkout's own failure or since) leaves the request to run (again).
    """
    order_key = record.get("order_key")
    if not order_key:
        return None
    order = await storage.orders.get(order_key)
    if (order is None or order.get("customer") != customer["_id"] or order.get("stock") == "reserving"
            or order.get("status") not in ("HOLD", "PROCESSING")):
        return None
    return answer_for(order)


async def _finish_quietly(keys, key_id: str, status: int, body: dict) -> None:
    """Store a key's answer; a failure is logged only: the answer is computed and given.
    A retry then finds the claim naming its order and answers from that."""
    try:
        await keys.finish(key_id, status, body)
    except Exception:
        log.exception("Idempotency-Key %s: could not store the answer (a retry answers from its order)", key_id)


async def _forget_quietly(keys, key_id: str) -> None:
    """Drop a key's claim; a failure is logged only (the claim's lease runs out instead)."""
    try:
        await keys.forget(key_id)
    except Exception:
        log.exception("Idempotency-Key %s: could not drop the claim; it lapses in %g s", key_id, LOCK_SECONDS)


async def _checkout_once(storage, table, customer: dict, request: dict, locked: bool = False,
                         key_id: str | None = None) -> tuple[int, dict]:
    if not locked:
        # The lock's read is the checkout's read of the customer: fresh, and taken under the lock.
        customer = await storage.customers.acquire_checkout_lock(customer["_id"], LOCK_SECONDS)
        if customer is None:
            raise CheckoutError(409, "a checkout of this cart is already in progress; try again in a moment")
    lock = CheckoutLock(storage, customer)
    last_checkout = None
    try:
        fingerprint = checkout_fingerprint(customer)
        answer = await _repeat_answer(storage, table, lock, fingerprint, request)
        if answer is not None:
            return 200, answer
        body, order_key = await place_order(storage, table, lock, request, key_id=key_id)
        # Direct orders too: if clearing their cart failed, a repeat must find the order.
        last_checkout = {"fingerprint": fingerprint, "order_key": order_key}
        return 200, body
    finally:
        # Never replaces the answer (or the error) computed above.
        await lock.release_quietly(last_checkout)


async def _repeat_answer(storage, table, lock: CheckoutLock, fingerprint: str, request: dict) -> dict | None:
    """The answer for a repeat of the customer's last checkout of this same cart, or None.

    - its order still HOLD with at least `reuse_hold_min_left` to go: its `next_step`;
    - HOLD with less left: its gateway is asked (`_settle_previous`): paid -> its
      `order_key`; undecided -> 409; never paid -> cancelled, and a new order is placed;
    - its order PROCESSING (paid at once) but its items not yet out of the cart (that
      write failed): its `order_key`, after finishing what the failure left undone.
    Anything else (another cart, a cancelled or finished order) places a new order. A repeat
    is answered only for a request the normal path would accept as to its address and
    methods (`_refuse_bad_repeat`); its stock is not checked again: the order holds it.
    """
    customer = lock.customer
    previous = customer.get("last_checkout") or {}
    if previous.get("fingerprint") != fingerprint or not previous.get("order_key"):
        return None
    order = await storage.orders.get(previous["order_key"])
    if order is None or order.get("customer") != customer["_id"]:
        return None
    if order.get("status") == "HOLD" and order.get("stock") == "held":
        _refuse_bad_repeat(customer, request, table)
        if _as_utc(order.get("hold_until")) - utcnow() >= reuse_hold_min_left(table.site.hold_minutes):
            return answer_for(order)
        return await _settle_previous(storage, table, order)
    if (order.get("status") == "PROCESSING" and order.get("stock") == "held"
            and order["_id"] not in (customer.get("cleared") or {})):
        _refuse_bad_repeat(customer, request, table)
        await _finish_paid(storage, order, lock)
        return answer_for(order)
    return None


PREVIOUS_STILL_PROCESSING = ("your previous payment for this cart is still being processed; "
                             "try again in a few minutes")


async def _settle_previous(storage, table, order: dict) -> dict | None:
    """A repeat's HOLD order close to expiry: settle it on its gateway's word before replacing it.

    The shopper may have paid and lost the return: a new order would make them pay twice.
    PAID -> settled (the cart cleared), its `order_key` answers; FAILED -> cancelled (units
    back), None: a new order is placed; PENDING, the gateway unreachable, or a method nobody
    can ask (removed or given to another provider by a reload) -> 409, the order untouched.
    """
    method = method_for(table, order)
    if method is None:
        log.error("order %s: %s; a repeat checkout of its cart waits for it", order["_id"],
                  no_method_reason(table, order))
        raise CheckoutError(409, PREVIOUS_STILL_PROCESSING)
    check = await ask_gateway(method, order, timeout=start_deadline())
    if check is None or check.state is PaymentState.PENDING:
        raise CheckoutError(409, PREVIOUS_STILL_PROCESSING)
    if check.state is PaymentState.FAILED and not check.detail:
        check = dataclasses.replace(check, detail="replaced by a new checkout of the same cart")
    outcome = await settle(storage, table, order, check)
    if outcome.result == PAID:
        return answer_for(outcome.order)
    if outcome.result == FAILED:
        return None
    raise CheckoutError(409, PREVIOUS_STILL_PROCESSING)  # still HOLD (a racing writer)


def _as_utc(value) -> datetime:
    """A stored datetime, zone-aware (some drivers read them back naive, in UTC)."""
    if not isinstance(value, datetime):
        return datetime.min.replace(tzinfo=UTC)  # unreadable: treat the hold as over
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def _finish_paid(storage, order: dict, lock: CheckoutLock) -> None:
    """A paid order's side effects (markers, cart, `committed`), run by the checkout.

    The order is paid: whatever fails here is logged and left to the reconciler (which
    finishes paid orders), and the checkout still answers with the order.
    """
    try:
        await reservations.finish_commit(storage, order, lock)
    except Exception:
        log.exception("order %s is paid, but finishing it failed; the reconciler will finish it", order["_id"])


def answer_for(order: dict) -> dict:
    """The checkout's answer for an order: where to pay, or its key."""
    next_step = (order.get("payment") or {}).get("next_step")
    if order.get("status") == "HOLD" and next_step:
        return {"next_step": next_step}
    return {"order_key": order["_id"]}


# -- validation (the seed page's six rules)

def _validate(customer: dict, loaded: LoadedCart, request: dict, table):
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
            refuse("cart", _short_message(line.name, line.product, line.quantity, left))

    missing = [name for name in PROFILE_FIELDS if not customer.get(name)]
    if missing:
        refuse("profile", f"your profile is incomplete: set {', '.join(missing)} (PATCH /api/shop/profile)")

    address_doc, payment, shipping = _request_choices(customer, request, table, refuse)
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


def _request_choices(customer: dict, request: dict, table, refuse):
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


def _refuse_bad_repeat(customer: dict, request: dict, table) -> None:
    """A repeat answers only a body the normal path would accept as to address and methods.

    The same 400 as the normal path's; the stock is not checked again (the repeated
    order holds its units), nor whether the methods serve the cart: the repeat answers the
    order as it was placed, whatever methods the body names (CONTRACT.md).
    """
    problems: dict[str, list[str]] = {}
    _request_choices(customer, request, table, lambda field, message: problems.setdefault(field, []).append(message))
    if problems:
        raise _refusal(problems)


def _short_message(name: str, product_id: int, wanted: int, left: int) -> str:
    if left <= 0:
        return f"{name} (product {product_id}) is out of stock"
    return f"not enough stock for {name} (product {product_id}): {left} left, {wanted} in your cart"


# The order the rules are reported in, whichever was checked first.
RULE_FIELDS = ("cart", "profile", "address", "payment_method", "shipping_method")


def _refusal(problems: dict[str, list[str]]) -> CheckoutError:
    ordered = {field: problems[field] for field in sorted(problems, key=RULE_FIELDS.index)}
    messages = [message for field in ordered.values() for message in field]
    return CheckoutError(400, "; ".join(messages), ordered)


# -- the order and its payment

def _build_order(order_key, customer, loaded, request, address_doc, payment, shipping, cost, site, now) -> dict:
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


def payment_urls(site, method_id: int, order_key: str, return_token: str) -> PaymentUrls:
    """The gateway's URLs; the return URL carries the order's return token (`rt`).

    The return endpoint is public and order keys are sequential: only a request carrying
    the token (the shopper's browser, sent back by the gateway) may settle the order there.
    """
    base = site.base_url
    return PaymentUrls(return_url=f"{base}/api/shop/checkout/return/{method_id}?order={order_key}"
                                  f"&rt={return_token}",
                       notify_url=f"{base}/api/shop/checkout/notify/{method_id}")


def new_return_token() -> tuple[str, str]:
    """(token for the return URL, its hash for the order): unguessable, one per order."""
    token = secrets.token_urlsafe(16)
    return token, _return_token_hash(token)


def _return_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def return_token_matches(order: dict, token: str) -> bool:
    """Whether `token` is this order's return token (constant time; an order without one never matches)."""
    stored = order.get("return_token")
    if not isinstance(stored, str) or not token:
        return False
    return hmac.compare_digest(_return_token_hash(token).encode(), stored.encode())


async def place_order(storage, table, lock: CheckoutLock, request: dict,
                      key_id: str | None = None) -> tuple[dict, str]:
    """Validate, create the order, reserve, start the payment (for `lock.customer`).

    Returns (answer, order key). `key_id`: the Idempotency-Key claim this checkout runs
    under; the order is named on it as soon as it exists. Once the order's payment is
    recorded (HOLD with its next step, or PROCESSING) the answer is fixed: nothing after
    that raises.
    """
    customer = lock.customer
    site = table.site
    loaded = await load_cart(storage, customer, site.currency)
    problems, address_doc, payment, shipping, cost = _validate(customer, loaded, request, table)
    if problems:
        raise _refusal(problems)

    now = utcnow()
    order_key = await storage.orders.next_order_key(now.year)
    return_token, return_token_hash = new_return_token()
    order = await storage.orders.insert({
        **_build_order(order_key, customer, loaded, request, address_doc, payment, shipping, cost, site, now),
        "return_token": return_token_hash})
    if key_id is not None:
        await storage.idempotency.attach_order(key_id, order_key)
    await reservations.fault_point("order_inserted")
    lines = loaded.quantities
    short = await reservations.reserve_lines(storage, order_key, lines)
    if short:
        # No order exists for a cart that failed the stock rule.
        await storage.orders.delete(order_key, {"stock": "reserving"})
        names = {line.product: line.name for line in loaded.cart.lines}
        raise _refusal({"cart": [_short_message(names[p], p, lines[p], left) for p, left in short.items()]})
    await reservations.fault_point("stock_reserved")

    start = await _start_payment(storage, payment, order, payment_urls(site, payment.id, order_key, return_token))
    await reservations.fault_point("payment_started")
    record = {**order["payment"], "reference": start.reference, "next_step": start.redirect_url,
              "data": dict(start.data or {})}
    changes = {"stock": "held", "payment": record}
    history = None
    if start.settled:
        changes["status"] = "PROCESSING"
        history = {"status": "PROCESSING", "reason": f"settled by {payment.provider.name}"}
    recorded = await _record_payment(storage, order, changes, history)
    if recorded is None:
        # The reconciler gave this checkout up as stalled and cancelled the order.
        await storage.products.release(order_key, lines)
        raise CheckoutError(500, "the checkout took too long and was cancelled; please try again")
    log.info("order %s: %d units, total %d %s, %s (payment method %s)", order_key, sum(lines.values()),
             order["total"], order["currency"],
             "PROCESSING: settled at once" if start.settled else "HOLD: awaiting payment", payment.id)
    if start.settled:
        await _finish_paid(storage, recorded, lock)
    return answer_for(recorded), order_key


async def _record_payment(storage, order: dict, changes: dict, history: dict | None) -> dict | None:
    """The order leaves `reserving` with its payment recorded: the order as written, or None
    if the reconciler cancelled it first.

    A write whose reply was lost (the connection dropped after the server applied it) is
    told apart by reading the order back: if it is recorded, the checkout answers with it.
    """
    try:
        return await storage.orders.transition(order["_id"], {"stock": "reserving"}, changes, history,
                                               current=order)
    except Exception:
        current = await storage.orders.get(order["_id"])  # failing too: the original error stands as cause
        payment = (current or {}).get("payment") or {}
        if (current is not None and current.get("status") in ("HOLD", "PROCESSING")
                and current.get("stock") != "reserving" and "next_step" in payment
                and payment.get("attempt") == (order.get("payment") or {}).get("attempt")):
            log.warning("order %s: its payment was recorded, though the write's answer was lost", order["_id"])
            return current
        raise


async def _start_payment(storage, payment, order: dict, urls: PaymentUrls) -> PaymentStart:
    """provider.start, or cancel the order (units back, cart untouched) and raise 503/500."""
    provider = payment.provider
    method = f"payment method {payment.id}: {payment.title}"
    try:
        try:
            start = await asyncio.wait_for(provider.start(order_info(order), urls), start_deadline())
        except TimeoutError:  # cut off so that the checkout lock never lapses under it
            raise GatewayError(f"no answer within {start_deadline():g} s") from None
        if not isinstance(start, PaymentStart):
            raise TypeError(f"start() returned {start!r}, not a PaymentStart")
        if not start.settled and provider.flow == "redirect" and not start.redirect_url:
            raise TypeError("a redirect payment's start() returned no redirect_url")
        return start
    except GatewayError as exc:
        log.warning("order %s: payment method %s could not start the payment: %s", order["_id"], payment.id, exc)
        reason = f"payment service unavailable: {exc}"
        error = CheckoutError(503, f"the payment service is unavailable, please try again later ({method})")
    except ProviderError as exc:
        # The provider (or its gateway, with a 4xx) refused this payment; its message is safe to show.
        log.warning("order %s: payment method %s refused to start the payment: %s", order["_id"], payment.id, exc)
        reason = f"payment refused: {exc}"
        error = CheckoutError(503, f"the payment service could not start the payment: {exc} ({method})")
    except Exception:
        log.exception("order %s: payment method %s (%s) failed to start the payment",
                      order["_id"], payment.id, provider.name)
        reason = "payment could not be started: internal error"
        error = CheckoutError(500, "internal server error: the payment could not be started; nothing was charged")
    await reservations.cancel_order(storage, order, {"stock": "reserving"}, reason)
    raise error
