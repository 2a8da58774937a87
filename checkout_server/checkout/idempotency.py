"""A checkout sent with an `Idempotency-Key`: claim the key, answer a replay, store the answer.

The key's record lives in `storage.idempotency` (`{customer}:{key}`); its claim has a lease
of `checkout_lock.LOCK_SECONDS`, like the lock. A request whose answer was never stored
(its process died, or the write failed) is answered from the order its claim names.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable

from checkout_server.checkout import lock as checkout_lock
from checkout_server.checkout.answers import CheckoutError, answer_for
from checkout_server.storage.models import LIVE_STATUSES, StockState

# The checkout's logger, shared by its modules: one name to follow a checkout by.
log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 255

# The checkout itself, under the key's claim `key_id`: (status, body) or CheckoutError.
RunCheckout = Callable[[str], Awaitable[tuple[int, dict]]]


def request_hash(request: dict) -> str:
    """What a key's claim compares: the same key with another body is refused.

    Given the body as the client sent it (parsed JSON, before validation strips or fills in
    anything): `"  first  "` after `"first"` is another body. Key order and the spacing
    between JSON tokens are not compared.
    """
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


async def checkout_with_key(storage, customer: dict, sent: dict, idempotency_key: str,
                            run: RunCheckout, max_keys: int | None = None) -> tuple[int, dict]:
    """Answer a keyed checkout: a replay's stored answer, else `run(key_id)` under the key's claim.

    `sent`: the request body as the client sent it, compared with the key's first body.
    `max_keys`: how many keys one customer may have stored (each kept 24 hours); a new key
    beyond them is a 429 and stores nothing.
    """
    if not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise CheckoutError(400, f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
                            {"Idempotency-Key": [f"must be 1 to {MAX_IDEMPOTENCY_KEY} characters"]})
    key_id = f"{customer['_id']}:{idempotency_key}"
    hashed = request_hash(sent)
    keys = storage.idempotency
    claim = await keys.try_claim(key_id, hashed, lease_seconds=checkout_lock.LOCK_SECONDS,
                                 customer=customer["_id"])
    if claim.ours and claim.record is None and max_keys is not None:
        await _refuse_beyond(keys, key_id, customer["_id"], max_keys)
    if not claim.ours:
        existing = claim.record
        if existing is None:  # taken over by a racing retry, then purged: nothing to answer yet
            raise CheckoutError(409, "a request with this Idempotency-Key is still being processed")
        if existing.get("request_hash") != hashed:
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
        status, body = await run(key_id)
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


async def _refuse_beyond(keys, key_id: str, customer_id: int, max_keys: int) -> None:
    """429 (the new claim dropped) if the customer now has more than `max_keys` keys stored.

    Counted after the claim is stored, so that of new keys racing at the limit none slips
    through (all of them may be refused: a retry then finds room as keys expire).
    """
    if await keys.count_for_customer(customer_id, limit=max_keys + 1) <= max_keys:
        return
    await _forget_quietly(keys, key_id)
    log.warning("customer %s: Idempotency-Key refused, %d keys stored already", customer_id, max_keys)
    raise CheckoutError(429, f"too many Idempotency-Keys: at most {max_keys} per customer are kept, "
                             f"each for 24 hours; retry with a key already sent, or without one")


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
    if (order is None or order.customer != customer["_id"] or order.stock == StockState.RESERVING
            or order.status not in LIVE_STATUSES):
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
        log.exception("Idempotency-Key %s: could not drop the claim; it lapses in %g s", key_id,
                      checkout_lock.LOCK_SECONDS)
