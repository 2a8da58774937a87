"""The gateway calling back: the shopper's return and the server-to-server notification.

Both end in `settlement.settle` on what the gateway said. The handlers only parse the
request, call `settle_return` or `settle_notification`, and answer; a refusal is a
`CallbackError` (its status and message are the answer's).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from checkout_server.observability import logs
from checkout_server.payments import provider_calls, refunds
from checkout_server.payments.provider_calls import (
    GatewayTrouble,
    ProviderCallError,
    ProviderRefusal,
)
from checkout_server.payments.return_tokens import return_token_matches
from checkout_server.payments.settlement import (
    PENDING,
    method_for,
    no_method_reason,
    result_of,
    settle,
)
from checkout_server.storage.models import OrderStatus, StockState

log = logging.getLogger(__name__)


class CallbackError(Exception):
    """A return or notification refused: answered `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ReturnResult:
    """Where the shopper goes back to the shop: the order and its payment's outcome."""

    order_key: str
    result: str  # "paid", "failed" or "pending"


async def settle_return(storage, table, method_id: int, order_key: str, token: str,
                        params: Mapping[str, str]) -> ReturnResult:
    """The shopper's browser, back from the gateway: verify with the gateway, settle.

    The order's return token (`token`, only in the URL the gateway was given) is checked
    before anything else: order keys are sequential, and without it a request is answered
    as for an unknown order, verifies nothing and settles nothing. Never trusts `params`
    for the outcome: the provider asks its gateway.
    """
    order = await storage.orders.get(order_key) if order_key else None
    if order is None or order.stock == StockState.RESERVING or not return_token_matches(order, token):
        raise CallbackError(404, "order not found")
    logs.bind(order_key=order.key)  # only once its token matched: the key in the URL is anybody's
    if order.payment_method != method_id:
        if method_id not in table.payment:
            raise CallbackError(404, "payment method not found")
        raise CallbackError(400, f"order {order_key} was not paid with payment method {method_id}")
    method = method_for(table, order)
    if method is None:
        # Removed from the config since the checkout, or its id given to another provider:
        # nobody can verify the payment here. The shopper still lands on the site; the
        # order waits on HOLD (the sweeper too).
        log.error("order %s: %s; the return cannot be verified, the order stays as it is",
                  order.key, no_method_reason(table, order))
        return ReturnResult(order.key, result_of(order))
    if order.status != OrderStatus.HOLD:
        return ReturnResult(order.key, result_of(order))
    try:
        check = await provider_calls.verify_return(method, order, params)
    except ProviderCallError:
        # Logged by provider_calls. Not decided: the order stays on HOLD for a notification
        # or the expiry sweep.
        return ReturnResult(order.key, PENDING)
    return ReturnResult(order.key, (await settle(storage, table, order, check, by="shopper's return")).result)


async def settle_notification(storage, table, method_id: int, headers: Mapping[str, str], body: bytes) -> dict:
    """A server-to-server notification (webhook): verified by the provider, then settled.

    Returns the answer's body: `{"status": "ok" | "duplicate" | "ignored", ...}`.
    """
    method = table.payment.get(method_id)
    if method is None:
        raise CallbackError(404, "payment method not found")
    try:
        notification = await provider_calls.parse_notification(method, headers, body)
    except ProviderRefusal as exc:
        raise CallbackError(400, f"notification refused: {exc.reason}") from None
    except GatewayTrouble as exc:
        raise CallbackError(503, f"the payment service is unavailable: {exc.reason}") from None
    except ProviderCallError:  # a plugin bug, logged with its traceback
        raise CallbackError(500, "internal server error") from None
    if notification.order_key is None:
        return {"status": "ignored"}
    order = await storage.orders.get(notification.order_key)
    if order is None or order.stock == StockState.RESERVING:
        # Not ours yet (or at all): a gateway retries on an error answer.
        raise CallbackError(404, "order not found")
    logs.bind(order_key=order.key)
    if order.payment_method != method.id:
        raise CallbackError(400, f"order {order.key} was not paid with payment method {method.id}")
    if method_for(table, order) is not method:
        # The id now names another provider (a reload): its reading of this notification
        # says nothing about the payment the order's own provider took. Answered as for a
        # removed method, so the gateway retries until the method is configured again.
        log.error("order %s: %s; a notification to method %s cannot settle it",
                  order.key, no_method_reason(table, order), method.id)
        raise CallbackError(404, "payment method not found")
    if notification.event_id and str(notification.event_id) in order.events:
        return {"status": "duplicate", "order_key": order.key, "result": result_of(order)}
    stored = order.payment.reference
    if notification.reference and stored and notification.reference != stored:
        # Another payment naming this order key (one from before a database reset or
        # restore, its deliveries still retried): it says nothing about this order's.
        log.warning("order %s: ignored a notification about payment %s, not the order's %s",
                    order.key, notification.reference, stored)
        return {"status": "ignored", "order_key": order.key, "result": result_of(order)}
    if notification.refunds:
        try:
            order = await refunds.record_gateway_refunds(storage, order, notification.refunds)
        except refunds.RefundNotYetRecorded as exc:
            raise CallbackError(409, exc.message) from None  # the gateway delivers it again
    check = notification.check
    # Only an order still on HOLD may have its payment decided (check() may capture it).
    if check is None and order.status == OrderStatus.HOLD:
        try:
            check = await provider_calls.check(method, order)
        except GatewayTrouble as exc:
            raise CallbackError(503, f"the payment service is unavailable: {exc.reason}") from None
        except ProviderCallError:
            raise CallbackError(500, "internal server error") from None
    outcome = await settle(storage, table, order, check, by="gateway notification") if check is not None else None
    if notification.event_id:
        await storage.orders.add_event(order.key, notification.event_id)
    return {"status": "ok", "order_key": order.key, "result": outcome.result if outcome else result_of(order)}
