"""Declaring a route's operations for the OpenAPI document (GET /api/openapi.json).

    class GiftCardBalance(BaseHandler):
        auth = "customer"

        @api_operation("A gift card's balance", query=BalanceQuery, answers={200: BalanceAnswer})
        async def get(self, card_id):
            ...

`body` and `query` are marshmallow schemas (classes or instances) of the request body and
the query parameters; `answers` maps each status to the marshmallow schema of its body (None:
no body; a (media type, JSON Schema) pair for an answer that is not JSON). The document adds the answers every route of its kind can give on its own: 401
(and 403 for admin routes) from the token check, 400 with `fields` when there is a `body`,
404 when there are path parameters, 413, and 503 when the database does not answer. A
plugin route whose verbs are not declared this way is left out of the document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["PATH_ID", "Operation", "api_operation", "operation_of"]

OPENAPI_ATTRIBUTE = "__checkout_openapi__"
# A path id as BaseHandler.int_argument reads it: 1 to 15 digits (longer ones are 404s).
PATH_ID = {"type": "integer", "minimum": 1, "maximum": 10**15 - 1}


@dataclass(frozen=True)
class Operation:
    summary: str
    description: str = ""
    body: Any = None  # a marshmallow Schema (class or instance)
    body_required: bool = True  # False: an empty body means every field's default
    query: Any = None  # a marshmallow Schema whose fields are the query parameters
    answers: dict[int, Any] = field(default_factory=dict)
    # Path parameter name -> JSON Schema (default: a string).
    path: dict[str, dict] = field(default_factory=dict)
    # Extra parameters as OpenAPI parameter objects (say a request header).
    parameters: tuple[dict, ...] = ()
    # Status -> {header name: description} the answer carries (a 302's Location).
    answer_headers: dict[int, dict[str, str]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()


def api_operation(summary: str, **details):
    """Declare the decorated verb method's operation (see the module docstring)."""
    operation = Operation(summary, **details)

    def mark(method):
        setattr(method, OPENAPI_ATTRIBUTE, operation)
        return method

    return mark


def operation_of(method) -> Operation | None:
    return getattr(method, OPENAPI_ATTRIBUTE, None)
