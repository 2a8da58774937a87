"""A local fake of Zarinpal v4: request.json, StartPay/{authority}, verify.json.

Fault switches (`checkout_server.plugin.fake_gateway.Faults`), by operation name "request" and
"verify": delay, 5xx, malformed JSON. `amount_delta` and `currency` make the gateway record
a payment other than the one requested, so verify.json answers -50 (amounts differ), as the
real one does; `decline` fails the payment when the shopper approves.
"""

from __future__ import annotations

import secrets

from aiohttp import web

from checkout_server.plugin import (
    STATE,
    add_payment_page,
    approval_page,
    fake_api,
    json_object,
    new_app,
    with_query,
)

MINIMUM = {"IRR": 10_000, "IRT": 1_000}


def make_app(base_url: str) -> web.Application:
    app = new_app(base_url)
    app.router.add_post("/pg/v4/payment/request.json", payment_request)
    app.router.add_post("/pg/v4/payment/verify.json", payment_verify)
    add_payment_page(app, "/pg/StartPay/{authority}", payable=unpaid, page=start_pay_page,
                     choose=start_pay_choice)
    return app


def _error(code: int, message: str, status: int = 200, **extra) -> web.Response:
    return web.json_response({"data": [], "errors": {"code": code, "message": message, **extra}},
                             status=status)


@fake_api("request")
async def payment_request(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await json_object(request)
    if body is None:
        return _error(-9, "The input params invalid, validation error.", status=422)
    currency = body.get("currency", "IRR")
    amount = body.get("amount")
    problems = []
    if not isinstance(body.get("merchant_id"), str) or not body["merchant_id"]:
        problems.append({"merchant_id": "The merchant id field is required."})
    if currency not in MINIMUM:
        problems.append({"currency": "The selected currency is invalid."})
    elif not isinstance(amount, int) or isinstance(amount, bool) or amount < MINIMUM[currency]:
        problems.append({"amount": f"The amount must be at least {MINIMUM[currency]}."})
    if not isinstance(body.get("callback_url"), str) or not body["callback_url"].startswith("http"):
        problems.append({"callback_url": "The callback url field is required."})
    if not isinstance(body.get("description"), str) or not body["description"]:
        problems.append({"description": "The description field is required."})
    if problems:
        return _error(-9, "The input params invalid, validation error.", status=422, validations=problems)
    authority = "A" + "".join(secrets.choice("0123456789") for _ in range(35))
    faults = state.faults
    state.records[authority] = {
        "merchant_id": body["merchant_id"],
        # What the gateway will believe it charged: tampering makes it differ from the request.
        "amount": amount + faults.amount_delta,
        "currency": faults.currency or currency,
        "requested": (amount, currency),
        "callback_url": body["callback_url"],
        "description": body["description"],
        "status": "INIT",
    }
    return web.json_response({"data": {"code": 100, "message": "Success", "authority": authority,
                                       "fee_type": "Merchant", "fee": 0}, "errors": []})


@fake_api("verify")
async def payment_verify(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await json_object(request) or {}
    record = state.records.get(body.get("authority"))
    if record is None:
        return _error(-54, "Invalid authority.", status=422)
    if body.get("merchant_id") != record["merchant_id"]:
        return _error(-53, "Session is not this merchant_id session.", status=422)
    if (body.get("amount"), record["requested"][1]) != (record["amount"], record["currency"]):
        return _error(-50, "Session is not valid, amounts values is not the same.", status=422)
    if record["status"] == "VERIFIED":
        code, message = 101, "Verified"
    elif record["status"] == "PAID":
        record["status"] = "VERIFIED"
        record["ref_id"] = secrets.randbelow(10**9) + 10**8
        code, message = 100, "Paid"
    else:
        return _error(-51, "Session is not valid, session is not active paid try.", status=422)
    return web.json_response({"data": {
        "code": code, "message": message, "card_hash": secrets.token_hex(32).upper(),
        "card_pan": "502229******5995", "ref_id": record["ref_id"], "fee_type": "Merchant", "fee": 0,
    }, "errors": []})


def unpaid(request: web.Request) -> dict | None:
    record = request.app[STATE].records.get(request.match_info["authority"])
    return record if record is not None and record["status"] == "INIT" else None


def start_pay_page(record: dict) -> web.Response:
    amount, currency = record["requested"]
    return approval_page("Zarinpal (fake): pay", f"{amount} {currency}",
                         {"approve": "Pay", "decline": "Card declined", "cancel": "Cancel"})


def start_pay_choice(request: web.Request, record: dict, choice: str | None) -> str:
    paid = choice == "approve" and not request.app[STATE].faults.decline
    record["status"] = "PAID" if paid else ("CANCELLED" if choice == "cancel" else "FAILED")
    return with_query(record["callback_url"],
                      {"Authority": request.match_info["authority"], "Status": "OK" if paid else "NOK"})
