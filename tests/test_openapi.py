"""GET /api/openapi.json: a valid OpenAPI 3.1 document with every route of the application."""

import pytest
from marshmallow import Schema, fields
from openapi_spec_validator import validate

from checkout_server.handlers import all_handlers
from checkout_server.observability.http import VERBS, route_for
from checkout_server.openapi import documented_operations
from checkout_server.plugin import BaseHandler, api_operation, hookimpl
from checkout_server.testing import TestShop


class BalanceAnswer(Schema):
    balance = fields.Integer(required=True)


class GiftCardBalance(BaseHandler):
    auth = "customer"

    @api_operation("A gift card's balance", answers={200: BalanceAnswer})
    async def get(self, card_number):
        self.send({"balance": 0})


class Undocumented(BaseHandler):
    auth = "public"

    async def get(self):
        self.send({})


class GiftCards:
    @hookimpl
    def register_routes(register):
        register(r"/giftcards/([^/]+)/balance", GiftCardBalance)
        register(r"/giftcards/undocumented", Undocumented)


def implemented_verbs(handler) -> set[str]:
    import tornado.web
    return {verb for verb in VERBS
            if getattr(handler, verb) is not getattr(tornado.web.RequestHandler, verb)}


@pytest.mark.gen_test
async def test_the_document_is_valid_openapi_3_1_and_has_every_route_and_verb():
    async with TestShop(plugins=[GiftCards]) as shop:
        r = await shop.request("GET", "/api/openapi.json")  # no token
        assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
        document = r.body
        validate(document)
        assert document["openapi"].startswith("3.1")
        for pattern, handler, *_ in all_handlers():
            route = route_for(pattern, handler)
            assert route.template in document["paths"], f"{route.template} is not in the document"
            documented = {verb for verb in document["paths"][route.template] if verb in VERBS}
            assert documented == implemented_verbs(handler), route.template
            assert set(documented_operations(handler)) == documented
        # A plugin route that declares its schema is in; one that does not is left out.
        balance = document["paths"]["/giftcards/{card_number}/balance"]["get"]
        assert balance["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/BalanceAnswer"}
        assert "/giftcards/undocumented" not in document["paths"]


@pytest.mark.gen_test
async def test_the_checkout_is_described_with_its_body_headers_answers_and_errors():
    async with TestShop() as shop:
        document = (await shop.request("GET", "/api/openapi.json")).body
    checkout = document["paths"]["/api/shop/checkout/cart"]["post"]
    body = checkout["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    schema = document["components"]["schemas"][body]
    assert set(schema["required"]) == {"address", "payment_method", "shipping_method"}
    assert schema["properties"]["notes"]["maxLength"] == 500
    assert schema["additionalProperties"] is False
    assert set(checkout["responses"]) >= {"200", "400", "401", "409", "503"}
    [key] = [p for p in checkout["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["in"] == "header" and key["schema"]["maxLength"] == 255
    assert checkout["security"] == [{"customerToken": []}]
    schemes = document["components"]["securitySchemes"]
    assert schemes["customerToken"] == {**schemes["customerToken"], "type": "apiKey", "in": "header",
                                        "name": "Authorization"}
    assert "Token" in schemes["customerToken"]["description"]
    # The error shape, with the 400's field map.
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert error["properties"]["fields"] == {"type": "object",
                                             "additionalProperties": {"type": "array", "items": {"type": "string"}}}
    assert checkout["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    # Path and query parameters.
    order = document["paths"]["/api/shop/orders/{order_key}"]["get"]
    assert [p["name"] for p in order["parameters"] if p["in"] == "path"] == ["order_key"]
    assert "404" in order["responses"]
    listing = document["paths"]["/api/shop/orders"]["get"]
    limit = next(p for p in listing["parameters"] if p["name"] == "limit")
    assert limit["in"] == "query" and limit["schema"]["maximum"] == 100
    admin = document["paths"]["/api/admin/products"]["post"]
    assert admin["security"] == [{"adminToken": []}] and {"401", "403", "201"} <= set(admin["responses"])
    assert document["paths"]["/health"]["get"]["security"] == []
