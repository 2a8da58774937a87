"""The OpenAPI 3.1 document, generated from the routes and their marshmallow schemas.

Every documented verb method carries an `api_operation` (plugin/api_docs.py) naming its
request body, query and answer schemas; this module turns the application's routes into
the document with apispec and its marshmallow plugin. Nothing here is written by hand but
what every route of a kind shares: the token schemes, the error answer, and the answers the
base handler gives on its own (401/403 from the token check, 400 for a body, 404 for path
parameters, 413, 503).
"""

from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from checkout_server import __version__
from checkout_server.observability.http import VERBS, Route
from checkout_server.plugin.api_docs import Operation, operation_of
from checkout_server.plugin.web import MAX_BODY_BYTES
from checkout_server.response_schemas import ErrorAnswer

__all__ = ["build_document", "documented_operations"]

ERROR = "Error"
DESCRIPTION = """\
Turns a shopper's cart into an order and starts its payment. JSON in, JSON out; money is an
integer in minor units of the shop's one currency. Every error answer is JSON with a string
`error`; validation errors (400) add `fields`: field name -> list of messages.

Authentication: `Authorization: Token <key>`, a customer's token for /api/shop/..., the
admin token for /api/admin/....
"""

_SECURITY = {
    "customer": [{"customerToken": []}],
    "admin": [{"adminToken": []}],
    "public": [],
}
_STANDARD_ANSWERS = {
    400: "Invalid request: `error` says what, `fields` maps each bad field to its messages",
    401: "Missing, malformed or unknown token",
    403: "A customer token on an admin endpoint",
    404: "Not found (an id that does not exist or is not yours)",
    409: "Conflict: the same request is running, or the data kept changing; try again",
    413: f"Request body larger than {MAX_BODY_BYTES} bytes",
    503: "The database, or for a checkout or notification the payment service, does not answer",
}


def documented_operations(handler: type) -> dict[str, Operation]:
    """{verb: Operation} of the handler's verb methods that declare one."""
    found = {}
    for verb in VERBS:
        operation = operation_of(getattr(handler, verb, None))
        if operation is not None:
            found[verb] = operation
    return found


def build_document(routes: list[Route], *, title: str = "checkout-server") -> dict:
    """The OpenAPI 3.1 document of `routes` (observability.http.Route); undeclared routes are left out."""
    spec = APISpec(title=title, version=__version__, openapi_version="3.1.0",
                   plugins=[MarshmallowPlugin()], info={"description": DESCRIPTION})
    token = "`Authorization: Token <{}>`"
    spec.components.security_scheme("customerToken", {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": token.format("customer token")})
    spec.components.security_scheme("adminToken", {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": token.format("admin token") + " (the server's CHECKOUT_ADMIN_TOKEN)"})
    spec.components.schema(ERROR, schema=ErrorAnswer)
    seen_ids: set[str] = set()
    for route in routes:
        operations = documented_operations(route.handler)
        if not operations:
            continue
        auth = getattr(route.handler, "auth", "customer")
        built = {verb: _operation(route, auth, verb, op) for verb, op in operations.items()}
        for operation in built.values():
            # A handler serving several routes (the storefront's pages): one id per route.
            base, number = operation["operationId"], 2
            while operation["operationId"] in seen_ids:
                operation["operationId"], number = f"{base}{number}", number + 1
            seen_ids.add(operation["operationId"])
        spec.path(path=route.template, operations=built)
    return spec.to_dict()


def _operation(route: Route, auth: str, verb: str, op: Operation) -> dict:
    parameters = [{"in": "path", "name": name, "required": True,
                   "schema": op.path.get(name, {"type": "string"})} for name in route.parameters]
    if op.query is not None:
        parameters.append({"in": "query", "schema": op.query})
    parameters.extend(op.parameters)
    answers: dict[int, dict] = {}
    for status, schema in op.answers.items():
        answer: dict = {"description": _describe(schema, status)}
        if isinstance(schema, tuple):  # (media type, schema): an answer that is not JSON
            media_type, schema = schema
            answer["content"] = {media_type: {"schema": schema}}
        elif schema is not None:
            answer["content"] = {"application/json": {"schema": schema}}
        headers = op.answer_headers.get(status)
        if headers:
            answer["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                                 for name, text in headers.items()}
        answers[status] = answer
    standard = [413, 503]
    if op.body is not None or op.query is not None:
        standard.append(400)
    if auth != "public":
        standard.append(401)
    if auth == "admin":
        standard.append(403)
    if route.parameters:
        standard.append(404)
    for status in standard:
        answers.setdefault(status, {"description": _STANDARD_ANSWERS[status],
                                    "content": {"application/json": {"schema": ERROR}}})
    operation: dict = {
        "summary": op.summary,
        "operationId": f"{route.handler.__name__}.{verb}",
        "tags": list(op.tags) or [_tag(route, auth)],
        "security": _SECURITY.get(auth, []),
        "parameters": parameters,
        "responses": {str(status): answers[status] for status in sorted(answers)},
    }
    if op.description:
        operation["description"] = op.description
    if op.body is not None:
        operation["requestBody"] = {"required": op.body_required, "content": {"application/json": {"schema": op.body}}}
    return operation


def _describe(schema, status: int) -> str:
    if isinstance(schema, tuple):
        schema = None
    if schema is ErrorAnswer and status in _STANDARD_ANSWERS:
        return _STANDARD_ANSWERS[status]
    doc = (getattr(schema, "__doc__", None) if isinstance(schema, type) else getattr(type(schema), "__doc__", None))
    if schema is not None and doc and not doc.startswith("Base schema class"):
        return doc.strip().splitlines()[0]
    return {200: "OK", 201: "Created", 204: "No content", 302: "Redirect"}.get(status, str(status))


def _tag(route: Route, auth: str) -> str:
    if auth == "admin":
        return "admin"
    if route.template.startswith("/api/shop"):
        return "shop"
    return "operations"
