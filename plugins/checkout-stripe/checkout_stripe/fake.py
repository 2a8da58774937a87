"""A local fake of Stripe Checkout Sessions, with signed webhooks.

Operations (for `Faults.only`): "create", "retrieve", "expire". `amount_delta`/`currency`
make the session record a charge other than the one asked for; `decline` keeps the session
unpaid when the shopper approves (and sends them to the cancel URL, as giving up does).

A paid session has a payment intent (`app[INTENTS]`); `POST /v1/refunds` refunds it, at most
its amount, one refund per `Idempotency-Key`. `app[REFUND_SWITCHES]`: `refuse_with` (a Stripe error code: every refund is
refused 400), `pending` (refunds stay "pending" until `settle_refund`), `lose_answers` (the
refund is made, then its answer delayed past any timeout: a lost answer). A key seen
before answers its first refund again.

`signed_event(app, session_id, type, secret)` builds a webhook delivery (headers, body) the
way Stripe signs it; `signed_charge_event(app, payment_intent, type, secret)` one about the
payment's charge (`charge.refunded`). Set `app[STATE].webhook = (url, secret)` (or POST `{"url", "secret"}` to
`/__fake__/webhook`) and the fake also delivers `checkout.session.completed` on payment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from checkout_server.plugin import (
    STATE,
    add_payment_page,
    approval_page,
    fake_api,
    json_object,
    new_app,
    record_or_404,
)

from . import sign

log = logging.getLogger("checkout_stripe.fake")
_background: set[asyncio.Task] = set()


@dataclass
class RefundSwitches:
    refuse_with: str | None = None  # e.g. "charge_disputed": every refund refused with it
    pending: bool = False
    lose_answers: bool = False


INTENTS = web.AppKey("stripe_payment_intents", dict)  # payment intent id -> intent
REFUNDS = web.AppKey("stripe_refunds", dict)  # refund id -> refund
REFUND_SWITCHES = web.AppKey("stripe_refund_switches", RefundSwitches)
INTENT_METADATA = web.AppKey("stripe_intent_metadata", dict)  # session id -> payment_intent_data.metadata


def make_app(base_url: str) -> web.Application:
    app = new_app(base_url)
    app[INTENTS], app[REFUNDS], app[INTENT_METADATA] = {}, {}, {}
    app[REFUND_SWITCHES] = RefundSwitches()
    app.router.add_get("/v1/checkout/sessions", list_sessions)
    app.router.add_post("/v1/refunds", create_refund)
    app.router.add_get("/v1/refunds", list_refunds)
    app.router.add_get("/v1/refunds/{id}", retrieve_refund)
    app.router.add_get("/v1/payment_intents/{id}", retrieve_intent)
    app.router.add_post("/v1/checkout/sessions", create_session)
    app.router.add_get("/v1/checkout/sessions/{id}", retrieve_session)
    app.router.add_post("/v1/checkout/sessions/{id}/expire", expire_session)
    add_payment_page(app, "/c/pay/{id}", payable=open_session, page=pay_page, choose=pay_choice)
    app.router.add_post("/__fake__/webhook", set_webhook)
    return app


def _error(status: int, message: str, type_: str = "invalid_request_error", **extra) -> web.Response:
    return web.json_response({"error": {"type": type_, "message": message, **extra}}, status=status)


def _authorised(request: web.Request) -> bool:
    return re.fullmatch(r"Bearer (sk|rk)_test_\S+", request.headers.get("Authorization", "")) is not None


def unflatten(form) -> dict:
    """Stripe's form encoding back into nested dicts (`a[b][0]` -> {"a": {"b": {"0": ...}}})."""
    out: dict = {}
    for key, value in form.items():
        parts = re.findall(r"[^\[\]]+", key)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _idempotent_replay(state, key: str | None, params: dict) -> web.Response | None:
    """Stripe's answer to a repeated Idempotency-Key: the first answer, or a 400 for other params."""
    if not key or key not in state.idempotency:
        return None
    seen_params, answer = state.idempotency[key]
    if seen_params != params:
        return _error(400, "Keys for idempotent requests can only be used with the same parameters "
                           "they were first used with.", "idempotency_error")
    return web.json_response(answer, headers={"Idempotent-Replayed": "true"})


@fake_api("create")
async def create_session(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not _authorised(request):
        return _error(401, "Invalid API Key provided.")
    params = unflatten(await request.post())
    key = request.headers.get("Idempotency-Key")
    replay = _idempotent_replay(state, key, params)
    if replay is not None:
        return replay
    try:
        items = [params["line_items"][index] for index in sorted(params["line_items"], key=int)]
        amount = sum(int(item["price_data"]["unit_amount"]) * int(item.get("quantity", 1)) for item in items)
        currency = {item["price_data"]["currency"] for item in items}
        success_url, cancel_url = params["success_url"], params["cancel_url"]
    except (KeyError, ValueError, TypeError) as exc:
        return _error(400, f"Missing or invalid parameter: {exc}", param=str(exc))
    if len(currency) != 1 or not re.fullmatch(r"[a-z]{3}", next(iter(currency))):
        return _error(400, "Invalid currency: lowercase three-letter ISO code required.", param="currency")
    session_id = "cs_test_" + secrets.token_hex(24)
    session = {
        "id": session_id, "object": "checkout.session", "mode": params.get("mode", "payment"),
        "url": f"{state.base_url}/c/pay/{session_id}",
        "status": "open", "payment_status": "unpaid",
        "amount_total": amount, "amount_subtotal": amount, "currency": currency.pop(),
        "client_reference_id": params.get("client_reference_id"),
        "customer_email": params.get("customer_email"),
        "metadata": params.get("metadata", {}),
        "success_url": success_url, "cancel_url": cancel_url,
        "payment_intent": None, "created": int(time.time()), "expires_at": int(time.time()) + 86400,
    }
    state.records[session_id] = session
    request.app[INTENT_METADATA][session_id] = (params.get("payment_intent_data") or {}).get("metadata", {})
    if key:
        state.idempotency[key] = (params, session)
    return web.json_response(session)


def _session_or_404(request: web.Request) -> dict:
    session_id = request.match_info["id"]
    return record_or_404(request, session_id, {"error": {
        "type": "invalid_request_error", "code": "resource_missing",
        "message": f"No such checkout.session: '{session_id}'"}})


@fake_api("retrieve")
async def retrieve_session(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _error(401, "Invalid API Key provided.")
    return web.json_response(_session_or_404(request))


@fake_api("expire")
async def expire_session(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _error(401, "Invalid API Key provided.")
    session = _session_or_404(request)
    if session["status"] != "open":
        return _error(400, f"Only Checkout Sessions with a status in [\"open\"] can be expired. This "
                           f"Checkout Session has a status of \"{session['status']}\".")
    session["status"] = "expired"
    return web.json_response(session)


def open_session(request: web.Request) -> dict | None:
    session = request.app[STATE].records.get(request.match_info["id"])
    return session if session is not None and session["status"] == "open" else None


def pay_page(session: dict) -> web.Response:
    return approval_page("Stripe Checkout (fake)",
                         f"{session['amount_total']} {session['currency'].upper()} (minor units)",
                         {"approve": "Pay", "decline": "Card declined", "cancel": "Back to the shop"})


def pay_choice(request: web.Request, session: dict, choice: str | None) -> str:
    state = request.app[STATE]
    if choice != "approve" or state.faults.decline:
        return session["cancel_url"]
    faults = state.faults
    session.update(status="complete", payment_status="paid",
                   amount_total=session["amount_total"] + faults.amount_delta,
                   currency=(faults.currency or session["currency"]).lower(),
                   payment_intent="pi_test_" + secrets.token_hex(12))
    request.app[INTENTS][session["payment_intent"]] = {
        "id": session["payment_intent"], "object": "payment_intent", "status": "succeeded",
        "amount": session["amount_total"], "amount_received": session["amount_total"],
        "currency": session["currency"], "latest_charge": "ch_test_" + secrets.token_hex(12),
        "metadata": dict(request.app[INTENT_METADATA].get(session["id"], {}))}
    if state.webhook:
        url, secret = state.webhook
        task = asyncio.ensure_future(_deliver(url, *signed_event(request.app, session["id"],
                                                                  "checkout.session.completed", secret)))
        _background.add(task)
        task.add_done_callback(_background.discard)
    return session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"])


def signed_event(app: web.Application, session_id: str, event_type: str, secret: str,
                 timestamp: int | None = None) -> tuple[dict, bytes]:
    """A webhook delivery about a session, signed as Stripe signs it: (headers, raw body)."""
    event = {"id": "evt_test_" + secrets.token_hex(12), "object": "event", "type": event_type,
             "created": int(time.time()), "livemode": False,
             "data": {"object": dict(app[STATE].records[session_id])}}
    body = json.dumps(event).encode()
    timestamp = int(time.time()) if timestamp is None else timestamp
    return ({"Stripe-Signature": f"t={timestamp},v1={sign(body, secret, timestamp)}",
             "Content-Type": "application/json"}, body)


async def set_webhook(request: web.Request) -> web.Response:
    body = await json_object(request) or {}
    if not (isinstance(body.get("url"), str) and isinstance(body.get("secret"), str)):
        return web.json_response({"error": "post {\"url\": ..., \"secret\": ...}"}, status=400)
    request.app[STATE].webhook = (body["url"], body["secret"])
    return web.json_response({"url": body["url"]})


async def _deliver(url: str, headers: dict, body: bytes) -> None:
    try:
        async with (aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client,
                    client.post(url, data=body, headers=headers) as resp):
            log.info("webhook to %s answered %s", url, resp.status)
    except aiohttp.ClientError as exc:
        log.warning("webhook to %s failed: %s", url, exc)


# -- refunds

def _refunded(app: web.Application, intent_id: str) -> int:
    return sum(r["amount"] for r in app[REFUNDS].values()
               if r["payment_intent"] == intent_id and r["status"] in ("succeeded", "pending"))


@fake_api("refund")
async def create_refund(request: web.Request) -> web.Response:
    app, state = request.app, request.app[STATE]
    if not _authorised(request):
        return _error(401, "Invalid API Key provided.")
    params = unflatten(await request.post())
    switches = app[REFUND_SWITCHES]
    key = request.headers.get("Idempotency-Key")
    replay = _idempotent_replay(state, key, params)
    if replay is not None:
        return replay
    intent = app[INTENTS].get(params.get("payment_intent"))
    if intent is None:
        return _error(400, f"No such payment_intent: '{params.get('payment_intent')}'", code="resource_missing",
                      param="payment_intent")
    left = intent["amount"] - _refunded(app, intent["id"])
    try:
        amount = int(params.get("amount", left))
    except ValueError:
        return _error(400, "Invalid integer: amount", param="amount")
    if switches.refuse_with:
        return _error(400, f"This charge cannot be refunded ({switches.refuse_with}).", code=switches.refuse_with)
    if amount < 1 or amount > left:
        return _error(400, f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                      code="amount_too_large", param="amount")
    refund = {"id": "re_test_" + secrets.token_hex(12), "object": "refund", "amount": amount,
              "currency": intent["currency"], "payment_intent": intent["id"], "charge": intent["latest_charge"],
              "status": "pending" if switches.pending else "succeeded", "metadata": params.get("metadata", {}),
              "reason": params.get("reason"), "created": int(time.time())}
    app[REFUNDS][refund["id"]] = refund
    if key:
        state.idempotency[key] = (params, refund)
    if switches.lose_answers:  # refunded; the answer comes too late for the client
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.closing.wait(), 2.0)
    return web.json_response(refund)


def settle_refund(app: web.Application, refund_id: str, status: str = "succeeded") -> dict:
    """Finish a pending refund at the fake: "succeeded" or "failed"."""
    refund = app[REFUNDS][refund_id]
    refund["status"] = status
    if status == "failed":
        refund["failure_reason"] = "expired_or_canceled_card"
    return refund


@fake_api("get_refund")
async def retrieve_refund(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _error(401, "Invalid API Key provided.")
    refund = request.app[REFUNDS].get(request.match_info["id"])
    if refund is None:
        return _error(404, f"No such refund: '{request.match_info['id']}'", code="resource_missing")
    return web.json_response(refund)


@fake_api("list_refunds")
async def list_refunds(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _error(401, "Invalid API Key provided.")
    intent = request.query.get("payment_intent")
    data = [r for r in request.app[REFUNDS].values() if intent is None or r["payment_intent"] == intent]
    return web.json_response({"object": "list", "data": data[::-1], "has_more": False, "url": "/v1/refunds"})


@fake_api("get_intent")
async def retrieve_intent(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _error(401, "Invalid API Key provided.")
    intent = request.app[INTENTS].get(request.match_info["id"])
    if intent is None:
        return _error(404, f"No such payment_intent: '{request.match_info['id']}'", code="resource_missing")
    return web.json_response({**intent, "amount_refunded": _refunded(request.app, intent["id"])})


@fake_api("list_sessions")
async def list_sessions(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _error(401, "Invalid API Key provided.")
    intent = request.query.get("payment_intent")
    data = [s for s in request.app[STATE].records.values() if intent is None or s.get("payment_intent") == intent]
    return web.json_response({"object": "list", "data": data, "has_more": False, "url": "/v1/checkout/sessions"})


def signed_charge_event(app: web.Application, intent_id: str, event_type: str, secret: str) -> tuple[dict, bytes]:
    """A webhook delivery about a payment's charge (`charge.refunded`), signed as Stripe signs it."""
    intent = app[INTENTS][intent_id]
    charge = {"id": intent["latest_charge"], "object": "charge", "amount": intent["amount"],
              "amount_refunded": _refunded(app, intent_id), "currency": intent["currency"],
              "payment_intent": intent_id, "refunded": _refunded(app, intent_id) >= intent["amount"]}
    event = {"id": "evt_test_" + secrets.token_hex(12), "object": "event", "type": event_type,
             "created": int(time.time()), "livemode": False, "data": {"object": charge}}
    body = json.dumps(event).encode()
    timestamp = int(time.time())
    return ({"Stripe-Signature": f"t={timestamp},v1={sign(body, secret, timestamp)}",
             "Content-Type": "application/json"}, body)
