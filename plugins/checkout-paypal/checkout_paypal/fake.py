"""A local fake of PayPal: OAuth client credentials, Orders v2, webhook verification.

Operations (for `Faults.only`): "token", "create", "get", "capture", "verify_webhook",
"refund", "get_capture", "get_refund".
`amount_delta`/`currency` make the capture differ from the order; `decline` (or the page's
"Card declined" button) approves the order with an instrument that is declined at capture.

`signed_event(app, paypal_order_id, event_type, webhook_id)` builds a webhook delivery
(headers, body) that this fake's verify-webhook-signature accepts, and only that delivery.

`hold_captures(app)` keeps every capture in progress until the test releases it; meanwhile
another capture with the same PayPal-Request-Id is answered 422 PREVIOUS_REQUEST_IN_PROGRESS,
as PayPal may answer the second of two simultaneous requests. `refuse_captures(app, issue)`
answers every capture 422 with `issue`, the order left APPROVED: a refusal that lasts (a
payee account or configuration problem).

`POST /v2/payments/captures/{id}/refund` refunds a capture, at most what is left of it, once
per PayPal-Request-Id; the capture becomes PARTIALLY_REFUNDED, then REFUNDED.
`app[REFUND_SWITCHES]`: `refuse_with` (an issue: every refund refused 422), `pending`
(refunds stay PENDING until `settle_refund`), `lose_answers` (the refund is made, its answer
delayed past any timeout). `signed_refund_event(app, refund_id, webhook_id)` builds the
PAYMENT.CAPTURE.REFUNDED delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

from checkout_server.plugin import (
    STATE,
    add_payment_page,
    approval_page,
    fake_api,
    json_object,
    new_app,
    record_or_404,
    with_query,
)

from .money import PAYPAL_CURRENCIES, from_paypal, paypal_decimals, to_paypal

SIGNING_KEY = secrets.token_bytes(32)  # stands in for PayPal's certificate key
TOKENS = web.AppKey("paypal_access_tokens", set)
IN_PROGRESS = web.AppKey("paypal_captures_in_progress", set)  # PayPal-Request-Ids being captured


@dataclass
class CaptureGate:
    """While `holding`, captures wait at the fake until `release` is set (see `hold_captures`).

    `refuse_with`: an issue every capture is refused with (see `refuse_captures`).
    """

    holding: bool = False
    refuse_with: str | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set when a capture is held
    release: asyncio.Event = field(default_factory=asyncio.Event)  # set it to let them finish
    refused: int = 0  # duplicates answered PREVIOUS_REQUEST_IN_PROGRESS


CAPTURE_GATE = web.AppKey("paypal_capture_gate", CaptureGate)


@dataclass
class RefundSwitches:
    refuse_with: str | None = None  # e.g. "REFUND_NOT_ALLOWED"
    pending: bool = False
    lose_answers: bool = False


REFUND_SWITCHES = web.AppKey("paypal_refund_switches", RefundSwitches)
CAPTURES = web.AppKey("paypal_captures", dict)  # capture id -> capture (shared with its order)
REFUNDS = web.AppKey("paypal_refunds", dict)  # refund id -> refund


def hold_captures(app: web.Application) -> CaptureGate:
    """Hold this fake's captures in progress until `gate.release` is set: a slow PayPal."""
    gate = app[CAPTURE_GATE]
    gate.holding = True
    return gate


def refuse_captures(app: web.Application, issue: str) -> CaptureGate:
    """Refuse this fake's captures with 422 `issue` from now on; the orders stay APPROVED."""
    gate = app[CAPTURE_GATE]
    gate.refuse_with = issue
    return gate


def make_app(base_url: str) -> web.Application:
    app = new_app(base_url)
    app[TOKENS] = set()
    app[IN_PROGRESS] = set()
    app[CAPTURE_GATE] = CaptureGate()
    app[REFUND_SWITCHES], app[CAPTURES], app[REFUNDS] = RefundSwitches(), {}, {}
    app.router.add_get("/v2/payments/captures/{id}", get_capture)
    app.router.add_post("/v2/payments/captures/{id}/refund", refund_capture)
    app.router.add_get("/v2/payments/refunds/{id}", get_refund)
    app.router.add_post("/v1/oauth2/token", token)
    app.router.add_post("/v2/checkout/orders", create_order)
    app.router.add_get("/v2/checkout/orders/{id}", get_order)
    app.router.add_post("/v2/checkout/orders/{id}/capture", capture_order)
    app.router.add_post("/v1/notifications/verify-webhook-signature", verify_webhook)
    add_payment_page(app, "/checkoutnow", payable=awaiting_buyer, page=approve_page, choose=approve_choice)
    return app


def _error(status: int, name: str, issue: str | None = None, message: str = "") -> web.Response:
    body = {"name": name, "message": message or name.replace("_", " ").capitalize(),
            "debug_id": secrets.token_hex(6)}
    if issue:
        body["details"] = [{"issue": issue, "description": issue.replace("_", " ").lower()}]
    return web.json_response(body, status=status)


def _authorised(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    return header.startswith("Bearer ") and header[7:] in request.app[TOKENS]


@fake_api("token")
async def token(request: web.Request) -> web.Response:
    if not request.headers.get("Authorization", "").startswith("Basic "):
        return web.json_response({"error": "invalid_client", "error_description": "Client Authentication failed"},
                                 status=401)
    form = await request.post()
    if form.get("grant_type") != "client_credentials":
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
    issued = "A21AA" + secrets.token_urlsafe(32)
    request.app[TOKENS].add(issued)
    return web.json_response({"scope": "https://uri.paypal.com/services/payments/payment",
                              "access_token": issued, "token_type": "Bearer",
                              "app_id": "APP-80W284485P519543T", "expires_in": 32400,
                              "nonce": secrets.token_hex(8)})


def _replay(request: web.Request, scope: str):
    key = request.headers.get("PayPal-Request-Id")
    return (scope, key) if key else None


@fake_api("create")
async def create_order(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not _authorised(request):
        return _error(401, "AUTHENTICATION_FAILURE")
    replay = _replay(request, "create")
    if replay in state.idempotency:
        return web.json_response(state.idempotency[replay], status=200)
    body = await json_object(request)
    try:
        unit = body["purchase_units"][0]
        currency, value = unit["amount"]["currency_code"], unit["amount"]["value"]
        context = body["payment_source"]["paypal"]["experience_context"]
        return_url, cancel_url = context["return_url"], context["cancel_url"]
    except (KeyError, IndexError, TypeError):  # TypeError: not a JSON object (None)
        return _error(400, "INVALID_REQUEST", "MISSING_REQUIRED_PARAMETER")
    if body.get("intent") != "CAPTURE":
        return _error(400, "INVALID_REQUEST", "INVALID_PARAMETER_VALUE")
    if currency not in PAYPAL_CURRENCIES:
        return _error(422, "UNPROCESSABLE_ENTITY", "CURRENCY_NOT_SUPPORTED")
    places = paypal_decimals(currency)
    pattern = r"\d{1,10}" + (rf"\.\d{{{places}}}" if places else "")
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        return _error(422, "UNPROCESSABLE_ENTITY", "DECIMAL_PRECISION")
    paypal_id = secrets.token_hex(9).upper()[:17]
    order = {
        "id": paypal_id, "intent": "CAPTURE", "status": "PAYER_ACTION_REQUIRED",
        "payment_source": {"paypal": {}},
        "purchase_units": [{"reference_id": unit.get("reference_id", "default"),
                            "custom_id": unit.get("custom_id"), "description": unit.get("description"),
                            "amount": {"currency_code": currency, "value": value}}],
        "create_time": _now(),
        "links": [
            {"href": f"{state.base_url}/v2/checkout/orders/{paypal_id}", "rel": "self", "method": "GET"},
            {"href": f"{state.base_url}/checkoutnow?token={paypal_id}", "rel": "payer-action",
             "method": "GET"},
        ],
    }
    state.records[paypal_id] = {"order": order, "return_url": return_url, "cancel_url": cancel_url,
                                "declined": False}
    if replay:
        state.idempotency[replay] = order
    return web.json_response(order, status=200)


def _record_or_404(request: web.Request) -> dict:
    return record_or_404(request, request.match_info["id"], {
        "name": "RESOURCE_NOT_FOUND", "details": [{"issue": "INVALID_RESOURCE_ID"}],
        "message": "The specified resource does not exist."})


@fake_api("get")
async def get_order(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _error(401, "AUTHENTICATION_FAILURE")
    return web.json_response(_record_or_404(request)["order"])


@fake_api("capture")
async def capture_order(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not _authorised(request):
        return _error(401, "AUTHENTICATION_FAILURE")
    record = _record_or_404(request)
    order = record["order"]
    replay = _replay(request, f"capture:{order['id']}")
    gate = request.app[CAPTURE_GATE]
    if replay and replay in request.app[IN_PROGRESS]:
        gate.refused += 1
        return _error(422, "UNPROCESSABLE_ENTITY", "PREVIOUS_REQUEST_IN_PROGRESS")
    if replay in state.idempotency:
        status, answer = state.idempotency[replay]
        return web.json_response(answer, status=status)
    if gate.holding and replay:
        request.app[IN_PROGRESS].add(replay)
        try:
            gate.arrived.set()
            await _first_of(gate.release, state.closing)
        finally:
            request.app[IN_PROGRESS].discard(replay)
    if order["status"] == "COMPLETED":
        return _error(422, "UNPROCESSABLE_ENTITY", "ORDER_ALREADY_CAPTURED")
    if gate.refuse_with:
        return _error(422, "UNPROCESSABLE_ENTITY", gate.refuse_with)
    if order["status"] != "APPROVED":
        return _error(422, "UNPROCESSABLE_ENTITY", "ORDER_NOT_APPROVED")
    if record["declined"]:
        return _error(422, "UNPROCESSABLE_ENTITY", "INSTRUMENT_DECLINED")
    unit = order["purchase_units"][0]
    faults = state.faults
    currency = faults.currency or unit["amount"]["currency_code"]
    minor = from_paypal(unit["amount"]["value"], unit["amount"]["currency_code"]) + faults.amount_delta
    capture = {"id": secrets.token_hex(9).upper()[:17], "status": "COMPLETED",
               "amount": {"currency_code": currency, "value": to_paypal(minor, currency)},
               "final_capture": True, "custom_id": unit.get("custom_id"), "create_time": _now(),
               "supplementary_data": {"related_ids": {"order_id": order["id"]}}}
    unit["payments"] = {"captures": [capture]}
    request.app[CAPTURES][capture["id"]] = capture
    order["status"] = "COMPLETED"
    if replay:
        state.idempotency[replay] = (201, order)
    return web.json_response(order, status=201)


async def _first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def awaiting_buyer(request: web.Request) -> dict | None:
    record = request.app[STATE].records.get(request.query.get("token"))
    return record if record is not None and record["order"]["status"] == "PAYER_ACTION_REQUIRED" else None


def approve_page(record: dict) -> web.Response:
    amount = record["order"]["purchase_units"][0]["amount"]
    return approval_page("PayPal (fake): log in and pay", f"{amount['value']} {amount['currency_code']}",
                         {"approve": "Pay now", "decline": "Pay with a declined card", "cancel": "Cancel"})


def approve_choice(request: web.Request, record: dict, choice: str | None) -> str:
    paypal_id = record["order"]["id"]
    if choice == "cancel":
        return with_query(record["cancel_url"], {"token": paypal_id})
    record["order"]["status"] = "APPROVED"
    record["declined"] = choice == "decline" or request.app[STATE].faults.decline
    return with_query(record["return_url"], {"token": paypal_id, "PayerID": "FAKEPAYER42"})


def _signature(transmission_id: str, when: str, webhook_id: str, event: dict) -> str:
    text = f"{transmission_id}|{when}|{webhook_id}|{json.dumps(event, sort_keys=True)}"
    return hmac.new(SIGNING_KEY, text.encode(), hashlib.sha256).hexdigest()


@fake_api("verify_webhook")
async def verify_webhook(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _error(401, "AUTHENTICATION_FAILURE")
    body = await json_object(request)
    try:
        expected = _signature(body["transmission_id"], body["transmission_time"], body["webhook_id"],
                              body["webhook_event"])
        good = hmac.compare_digest(expected, body["transmission_sig"])
    except (KeyError, TypeError):  # TypeError: not a JSON object (None), or a field of the wrong type
        return _error(400, "VALIDATION_ERROR", "MISSING_REQUIRED_PARAMETER")
    return web.json_response({"verification_status": "SUCCESS" if good else "FAILURE"})


def signed_event(app: web.Application, paypal_id: str, event_type: str, webhook_id: str,
                 when: datetime | None = None) -> tuple[dict, bytes]:
    """A webhook delivery about an order (or its capture), as PayPal transmits it."""
    order = app[STATE].records[paypal_id]["order"]
    if event_type.startswith("PAYMENT.CAPTURE."):
        resource, resource_type = dict(order["purchase_units"][0]["payments"]["captures"][0]), "capture"
    else:
        resource, resource_type = dict(order), "checkout-order"
    event = {"id": "WH-" + secrets.token_hex(10).upper(), "event_version": "1.0", "create_time": _now(),
             "resource_type": resource_type, "event_type": event_type,
             "summary": f"{event_type} (fake)", "resource": resource}
    transmission_id = secrets.token_hex(16)
    stamp = (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "PAYPAL-TRANSMISSION-ID": transmission_id, "PAYPAL-TRANSMISSION-TIME": stamp,
        "PAYPAL-TRANSMISSION-SIG": _signature(transmission_id, stamp, webhook_id, event),
        "PAYPAL-CERT-URL": f"{app[STATE].base_url}/v1/notifications/certs/CERT-fake",
        "PAYPAL-AUTH-ALGO": "SHA256withRSA", "Content-Type": "application/json",
    }
    return headers, json.dumps(event).encode()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")



# -- refunds (Payments v2)

def _refunded(app: web.Application, capture_id: str) -> int:
    return sum(r["_minor"] for r in app[REFUNDS].values()
               if r["_capture"] == capture_id and r["status"] in ("COMPLETED", "PENDING"))


def _public(refund: dict) -> dict:
    return {k: v for k, v in refund.items() if not k.startswith("_")}


@fake_api("get_capture")
async def get_capture(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _error(401, "AUTHENTICATION_FAILURE")
    capture = request.app[CAPTURES].get(request.match_info["id"])
    if capture is None:
        return _error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID")
    return web.json_response(capture)


@fake_api("refund")
async def refund_capture(request: web.Request) -> web.Response:
    app, state = request.app, request.app[STATE]
    if not _authorised(request):
        return _error(401, "AUTHENTICATION_FAILURE")
    capture = app[CAPTURES].get(request.match_info["id"])
    if capture is None:
        return _error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID")
    replay = _replay(request, f"refund:{capture['id']}")
    if replay in state.idempotency:
        return web.json_response(_public(state.idempotency[replay]), status=201)
    body = await json_object(request) or {}
    currency = capture["amount"]["currency_code"]
    captured = from_paypal(capture["amount"]["value"], currency)
    left = captured - _refunded(app, capture["id"])
    amount = body.get("amount")
    try:
        minor = left if amount is None else from_paypal(amount["value"], amount["currency_code"])
        if amount is not None and amount["currency_code"] != currency:
            return _error(422, "UNPROCESSABLE_ENTITY", "REFUND_CURRENCY_MISMATCH")
    except (KeyError, TypeError, ValueError):
        return _error(400, "INVALID_REQUEST", "INVALID_PARAMETER_VALUE")
    switches = app[REFUND_SWITCHES]
    if switches.refuse_with:
        return _error(422, "UNPROCESSABLE_ENTITY", switches.refuse_with)
    if capture["status"] == "REFUNDED":
        return _error(422, "UNPROCESSABLE_ENTITY", "CAPTURE_FULLY_REFUNDED")
    if minor < 1 or minor > left:
        return _error(422, "UNPROCESSABLE_ENTITY", "REFUND_AMOUNT_EXCEEDED")
    refund_id = secrets.token_hex(9).upper()[:17]
    refund = {"id": refund_id, "status": "PENDING" if switches.pending else "COMPLETED",
              "amount": {"value": to_paypal(minor, currency), "currency_code": currency},
              "custom_id": body.get("custom_id"), "note_to_payer": body.get("note_to_payer"),
              "create_time": _now(), "update_time": _now(), "_minor": minor, "_capture": capture["id"],
              "links": [{"href": f"{state.base_url}/v2/payments/refunds/{refund_id}", "rel": "self", "method": "GET"},
                        {"href": f"{state.base_url}/v2/payments/captures/{capture['id']}", "rel": "up",
                         "method": "GET"}]}
    app[REFUNDS][refund_id] = refund
    capture["status"] = "REFUNDED" if _refunded(app, capture["id"]) >= captured else "PARTIALLY_REFUNDED"
    if replay:
        state.idempotency[replay] = refund
    if switches.lose_answers:  # refunded; the answer comes too late for the client
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.closing.wait(), 2.0)
    return web.json_response(_public(refund), status=201)


@fake_api("get_refund")
async def get_refund(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _error(401, "AUTHENTICATION_FAILURE")
    refund = request.app[REFUNDS].get(request.match_info["id"])
    if refund is None:
        return _error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID")
    return web.json_response(_public(refund))


def settle_refund(app: web.Application, refund_id: str, status: str = "COMPLETED") -> dict:
    """Finish a PENDING refund at the fake: "COMPLETED" or "FAILED"."""
    refund = app[REFUNDS][refund_id]
    refund["status"] = status
    return refund


def signed_refund_event(app: web.Application, refund_id: str, webhook_id: str,
                        event_type: str = "PAYMENT.CAPTURE.REFUNDED") -> tuple[dict, bytes]:
    """A webhook delivery about a refund, as PayPal transmits it."""
    event = {"id": "WH-" + secrets.token_hex(10).upper(), "event_version": "1.0", "create_time": _now(),
             "resource_type": "refund", "event_type": event_type, "summary": f"{event_type} (fake)",
             "resource": _public(app[REFUNDS][refund_id])}
    transmission_id = secrets.token_hex(16)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "PAYPAL-TRANSMISSION-ID": transmission_id, "PAYPAL-TRANSMISSION-TIME": stamp,
        "PAYPAL-TRANSMISSION-SIG": _signature(transmission_id, stamp, webhook_id, event),
        "PAYPAL-CERT-URL": f"{app[STATE].base_url}/v1/notifications/certs/CERT-fake",
        "PAYPAL-AUTH-ALGO": "SHA256withRSA", "Content-Type": "application/json",
    }
    return headers, json.dumps(event).encode()
