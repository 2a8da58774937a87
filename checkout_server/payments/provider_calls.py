"""The one path from the core to a provider: every call of a provider method passes here.

Providers are third-party code that talks to remote gateways, so each call gets the same
treatment (tests/test_architecture.py keeps every other module of the core from calling a
provider method):

- one timeout policy: an asynchronous call is cut off after `CALL_SECONDS` (the gateway
  client's budget for a payment start: MAX_CALLS_PER_START x MAX_TIMEOUT), or the caller's
  shorter deadline (the checkout's, within its lock); `supports` and `quote` are synchronous
  and must not do I/O, so they need none;
- one classification of what went wrong, raised as a `ProviderCallError`:
  `GatewayTrouble` (the gateway timed out, was unreachable, answered 5xx or garbage:
  nothing is decided, a 503 where someone waits), `ProviderRefusal` (the provider or its
  gateway refused, e.g. a 4xx or a forged notification: its message is safe to show), and
  `ProviderFault` (a plugin bug: it raised anything else, or answered the wrong type);
- one log line per failure, naming the method id, the provider and the order:
  `payment method 3 (stripe): check() for order ORD-2026-000001: gateway trouble: ...`.
  Callers decide what the failure means (a 503, a kept hold, an unavailable method) and
  do not log it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from checkout_server.observability import metrics
from checkout_server.plugin.gateway_http import MAX_CALLS_PER_START, MAX_TIMEOUT
from checkout_server.plugin.providers import (
    MAX_MONEY,
    Address,
    Cart,
    GatewayError,
    Notification,
    OrderInfo,
    PaymentCheck,
    PaymentStart,
    PaymentUrls,
    ProviderError,
    Refund,
    RefundRequest,
    RefundState,
    Support,
)
from checkout_server.storage.models import Order

log = logging.getLogger(__name__)

# How long any asynchronous provider call may take: what a payment start's gateway calls
# may take together (gateway_http keeps each call within MAX_TIMEOUT).
CALL_SECONDS = MAX_CALLS_PER_START * MAX_TIMEOUT


class ProviderCallError(Exception):
    """A provider call that gave no usable answer; `str()` is the reason (safe to log)."""

    kind = "failed"

    def __init__(self, reason: str, method=None, operation: str = "", cause: BaseException | None = None):
        super().__init__(reason)
        self.reason = reason
        self.method = method
        self.operation = operation
        self.cause = cause  # what the provider raised, if it raised (a RefundNotSupported...)


class GatewayTrouble(ProviderCallError):
    """The gateway could not be asked, or answered garbage: nothing is decided."""

    kind = "gateway trouble"


class ProviderRefusal(ProviderCallError):
    """The provider (or its gateway) refused; the reason is the provider's, safe to show."""

    kind = "refused"


class ProviderFault(ProviderCallError):
    """A plugin bug: the provider raised something unexpected or answered the wrong type."""

    kind = "provider bug"


def order_info(order: Order) -> OrderInfo:
    """An order as its payment provider sees it."""
    billing = order.billing
    count = order.unit_count
    return OrderInfo(
        order_key=order.key,
        total=order.total,
        currency=order.currency,
        customer_id=int(order.customer),
        email=billing.get("email"),
        phone=billing.get("phone"),
        name=billing.get("name") or "",
        description=f"Order {order.key}: {count} item{'s' if count != 1 else ''}",
        payment=dict(order.payment.data),
        attempt_id=order.payment.attempt,
    )


# -- payment providers

async def start(method, order: Order, urls: PaymentUrls, timeout: float = CALL_SECONDS) -> PaymentStart:
    """`provider.start`: a PaymentStart (a redirect one with its `redirect_url`)."""
    answer = await _call(method, "start", order.key, lambda: method.provider.start(order_info(order), urls),
                         timeout)
    if not isinstance(answer, PaymentStart):
        raise _bad_answer(method, "start", order.key, f"returned {answer!r}, not a PaymentStart")
    if not answer.settled and method.provider.flow == "redirect" and not answer.redirect_url:
        raise _bad_answer(method, "start", order.key, "a redirect payment's start() returned no redirect_url")
    return answer


async def verify_return(method, order: Order, params: Mapping[str, str],
                        timeout: float = CALL_SECONDS) -> PaymentCheck:
    """`provider.verify_return`: what the gateway says now that the shopper is back."""
    answer = await _call(method, "verify_return", order.key,
                         lambda: method.provider.verify_return(order_info(order), params), timeout)
    return _checked_check(method, "verify_return", order.key, answer)


async def check(method, order: Order, timeout: float = CALL_SECONDS) -> PaymentCheck:
    """`provider.check`: the gateway asked about the order's payment (it may end it)."""
    answer = await _call(method, "check", order.key, lambda: method.provider.check(order_info(order)), timeout)
    return _checked_check(method, "check", order.key, answer)


async def parse_notification(method, headers: Mapping[str, str], body: bytes,
                             timeout: float = CALL_SECONDS) -> Notification:
    """`provider.parse_notification`: a verified notification (a forged one is a refusal)."""
    answer = await _call(method, "parse_notification", None,
                         lambda: method.provider.parse_notification(headers, body), timeout)
    if not isinstance(answer, Notification) or not (answer.check is None or isinstance(answer.check, PaymentCheck)):
        raise _bad_answer(method, "parse_notification", None, f"returned {answer!r}, not a Notification")
    return answer


async def cancel_payment(method, order: Order, timeout: float = CALL_SECONDS) -> PaymentCheck:
    """`provider.cancel_payment`: an admin ends a HOLD order's payment; how it stands now."""
    answer = await _call(method, "cancel_payment", order.key,
                         lambda: method.provider.cancel_payment(order_info(order)), timeout)
    return _checked_check(method, "cancel_payment", order.key, answer)


async def refund(method, order: Order, request: RefundRequest, timeout: float = CALL_SECONDS) -> Refund:
    """`provider.refund`: the gateway's Refund (a `RefundNotSupported` is a refusal; its `cause`)."""
    answer = await _call(method, "refund", order.key, lambda: method.provider.refund(order_info(order), request),
                         timeout)
    return _checked_refund(method, "refund", order.key, answer)


async def check_refund(method, order: Order, known: Refund, timeout: float = CALL_SECONDS) -> Refund:
    """`provider.check_refund`: how a pending refund stands now."""
    answer = await _call(method, "check_refund", order.key,
                         lambda: method.provider.check_refund(order_info(order), known), timeout)
    return _checked_refund(method, "check_refund", order.key, answer)


# -- both kinds: synchronous questions about a cart

def supports(method, cart: Cart, address: Address | None = None) -> Support:
    """`provider.supports` (a shipping provider's with the address): a Support."""
    args = (cart,) if address is None else (cart, address)
    answer = _call_sync(method, "supports", lambda: method.provider.supports(*args))
    if not isinstance(answer, Support):
        raise _bad_answer(method, "supports", None, f"returned {answer!r}, not a Support")
    return answer


def quote(method, cart: Cart, address: Address) -> int:
    """`provider.quote`: the shipping cost, an integer from 0 to MAX_MONEY minor units."""
    cost = _call_sync(method, "quote", lambda: method.provider.quote(cart, address))
    # bool is an int subclass; True is not a price. Above MAX_MONEY the order could not be stored.
    if not isinstance(cost, int) or isinstance(cost, bool) or not 0 <= cost <= MAX_MONEY:
        raise _bad_answer(method, "quote", None,
                          f"returned {cost!r}, not an integer from 0 to {MAX_MONEY} in minor units")
    return cost


# -- lifecycle

async def open_provider(provider) -> None:
    """`provider.startup` (an error is the caller's: the service cannot run without it)."""
    await provider.startup()


async def close_provider(provider) -> None:
    """`provider.close`; a failure is logged, never raised (the others still close)."""
    try:
        await provider.close()
    except Exception:
        log.exception("%s method %s (%s): close() failed", provider.kind, provider.method.id, provider.name)


# -- the one call path

def _who(method, operation: str, order_key: str | None) -> str:
    provider = method.provider
    where = f" for order {order_key}" if order_key else ""
    return f"{provider.kind} method {method.id} ({provider.name}): {operation}(){where}"


async def _call(method, operation: str, order_key: str | None, call: Callable[[], Awaitable[Any]],
                timeout: float) -> Any:
    timeout = min(timeout, CALL_SECONDS)
    try:
        with metrics.gateway_call(method.provider.name, operation, _outcome):
            return await asyncio.wait_for(call(), timeout)
    except TimeoutError as exc:  # the deadline's, or the provider's own (an unwrapped aiohttp timeout)
        error = GatewayTrouble(f"no answer within {timeout:g} s", method, operation, exc)
    except GatewayError as exc:
        error = GatewayTrouble(str(exc) or type(exc).__name__, method, operation, exc)
    except ProviderError as exc:  # NotificationError, RefundNotSupported too
        error = ProviderRefusal(str(exc) or type(exc).__name__, method, operation, exc)
    except Exception as exc:
        log.exception("%s: %s", _who(method, operation, order_key), ProviderFault.kind)
        raise ProviderFault(f"{type(exc).__name__}: {exc}", method, operation, exc) from exc
    log.warning("%s: %s: %s", _who(method, operation, order_key), error.kind, error.reason)
    raise error


def _outcome(exc: BaseException | None) -> str:
    """A call's outcome as checkout_gateway_calls_total counts it (docs/operations.md)."""
    if exc is None:
        return "ok"
    if isinstance(exc, TimeoutError | GatewayError):
        return "unavailable"
    if isinstance(exc, ProviderError):
        return "refused"
    return "error"


def _call_sync(method, operation: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:
        log.exception("%s: %s", _who(method, operation, None), ProviderFault.kind)
        raise ProviderFault(f"{type(exc).__name__}: {exc}", method, operation) from exc


def _checked_check(method, operation: str, order_key: str, answer) -> PaymentCheck:
    if not isinstance(answer, PaymentCheck):
        raise _bad_answer(method, operation, order_key, f"returned {answer!r}, not a PaymentCheck")
    return answer


def _checked_refund(method, operation: str, order_key: str, answer) -> Refund:
    if not isinstance(answer, Refund) or not isinstance(answer.state, RefundState):
        raise _bad_answer(method, operation, order_key, f"returned {answer!r}, not a Refund")
    return answer


def _bad_answer(method, operation: str, order_key: str | None, reason: str) -> ProviderFault:
    log.error("%s: %s: %s", _who(method, operation, order_key), ProviderFault.kind, reason)
    return ProviderFault(reason, method, operation)
