"""The base API handler: authentication in prepare(), JSON in, JSON errors out.

Every handler is authenticated unless its class says `auth = "public"`; the app refuses to
start with a handler whose `auth` is anything but "customer", "admin" or "public".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from http import HTTPStatus

import tornado.web
from marshmallow import Schema, ValidationError

log = logging.getLogger("checkout_server.api")

AUTH_LEVELS = ("customer", "admin", "public")
MAX_BODY_BYTES = 64 * 1024


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class APIError(tornado.web.HTTPError):
    """An error answer: `{"error": message}` plus `fields` for validation errors."""

    def __init__(self, status: int, message: str, fields: dict | None = None, headers: dict | None = None):
        super().__init__(status)
        self.message = message
        self.fields = fields
        self.headers = headers or {}


class BaseHandler(tornado.web.RequestHandler):
    auth = "customer"

    def initialize(self, **kwargs):
        self.customer: dict | None = None
        self.is_admin = False

    # -- settings through properties
    @property
    def storage(self):
        return self.settings["storage"]

    @property
    def methods(self):
        """The current method table; read it once per request and keep the reference."""
        return self.settings["method_registry"].table

    @property
    def services(self):
        return self.settings["services"]

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")

    async def prepare(self):
        length = self.request.headers.get("Content-Length")
        if (length and length.isdigit() and int(length) > MAX_BODY_BYTES) or len(self.request.body or b"") > MAX_BODY_BYTES:
            raise APIError(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
        if self.auth == "public":
            return
        token = self._token()
        if self.auth == "admin":
            expected = self.settings.get("admin_token") or os.environ.get("CHECKOUT_ADMIN_TOKEN")
            if token and expected and hmac.compare_digest(token.encode(), expected.encode()):
                self.is_admin = True
                return
            if token and await self.storage.customers.by_token_hash(hash_token(token)):
                raise APIError(403, "this endpoint needs the admin token")
            raise APIError(401, "authentication required: send 'Authorization: Token <admin token>'")
        customer = await self.storage.customers.by_token_hash(hash_token(token)) if token else None
        if customer is None:
            raise APIError(401, "authentication required: send 'Authorization: Token <your token>'")
        self.customer = customer

    def _token(self) -> str | None:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "token" or not token or len(token) > 256:
            return None
        return token

    # -- JSON in
    def json_body(self, schema: Schema | None = None, *, partial: bool = False) -> dict:
        """The request body as a JSON object, validated by `schema` when given."""
        content_type = self.request.headers.get("Content-Type", "")
        if content_type and "json" not in content_type.lower():
            raise APIError(400, "the request body must be JSON (Content-Type: application/json)")
        try:
            data = json.loads(self.request.body or b"null")
        except (ValueError, UnicodeDecodeError):
            raise APIError(400, "the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise APIError(400, "the request body must be a JSON object")
        if schema is None:
            return data
        try:
            return schema.load(data, partial=partial)
        except ValidationError as exc:
            fields = _flatten(exc.normalized_messages())
            first = next(iter(fields.items()))
            raise APIError(400, f"invalid request: {first[0]}: {first[1][0]}", fields) from None

    def int_argument(self, value: str, what: str) -> int:
        """A path or query id: a positive integer, else 404 as for a missing object."""
        if not value.isdigit() or len(value) > 18:
            raise APIError(404, f"{what} not found")
        return int(value)

    # -- JSON out
    def send(self, data, status: int = 200):
        self.set_status(status)
        if status == 204:
            self.finish()
            return
        self.finish(json.dumps(data, default=_json_default, separators=(",", ":")))

    def write_error(self, status_code: int, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        body: dict = {}
        if isinstance(exc, APIError):
            body["error"] = exc.message
            if exc.fields:
                body["fields"] = exc.fields
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif status_code >= 500:
            body["error"] = "internal server error"
        elif status_code == 405:
            body["error"] = f"method {self.request.method} not allowed here"
        elif status_code == 404:
            body["error"] = "not found"
        else:
            body["error"] = self._reason or HTTPStatus(status_code).phrase
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(body))

    def log_exception(self, typ, value, tb):
        if isinstance(value, APIError):
            return
        super().log_exception(typ, value, tb)


class NotFoundHandler(BaseHandler):
    """JSON 404 for any unknown route, whatever the verb."""

    auth = "public"

    async def prepare(self):
        raise APIError(404, f"no such endpoint: {self.request.path}")


def _flatten(messages, prefix="") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                out.update(_flatten(value, name))
            else:
                out[name] = [str(m) for m in (value if isinstance(value, list) else [value])]
    else:
        out[prefix or "_schema"] = [str(m) for m in messages]
    return out


def _json_default(value):
    from datetime import datetime
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
