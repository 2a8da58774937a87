"""The base API handler: authentication in prepare(), JSON in, JSON errors out.

Every handler is authenticated unless its class says `auth = "public"`; the app refuses to
start with a handler whose `auth` is anything but "customer", "admin" or "public". A
"customer" handler may override `find_customer` to fetch the customer its own way (the
checkout takes its lock in the same update); an unknown token must still give None, so the
401 stays here.

Subclasses never override `prepare` (the token check lives there, and an override that
forgets `super()` would make the route public): they override `authorize`, which runs after
the token check, and their verbs. The app refuses to start with a subclass that defines
`prepare`, and with a non-public route whose handler is not a BaseHandler.

Customer tokens are stored only as SHA-256 hashes (a token is 32 random bytes, so a plain
hash is enough); the raw token is shown once, when the customer is created. The admin token
is compared in constant time. Every answer, errors included, is JSON; no traceback ever
reaches a client.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from http import HTTPStatus

import tornado.web
from marshmallow import Schema, ValidationError

from checkout_server.observability import logs
from checkout_server.plugin.providers import Method, Site
from checkout_server.storage import UNAVAILABLE_ERRORS
from checkout_server.storage.plugin_documents import PluginDocuments

log = logging.getLogger(__name__)

AUTH_LEVELS = ("customer", "admin", "public")
# The largest body a handler reads. The service's HTTP server (http_server.py) answers a
# larger one with a JSON 413 before reading it; this check covers any other server.
MAX_BODY_BYTES = 64 * 1024
MAX_TOKEN_LENGTH = 256
VERBS = ("get", "post", "put", "patch", "delete", "head", "options")


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
        self.application.inflight_requests.add(self)

    def on_finish(self):
        self.application.inflight_requests.discard(self)

    # -- settings through properties
    @property
    def storage(self):
        return self.settings["storage"]

    @property
    def methods(self):
        """The current method table; read it once per request and keep the reference."""
        return self.settings["method_registry"].table

    # -- for plugin routes (documented in docs/plugins.md)
    @property
    def site(self) -> Site:
        """The shop this service is: `[site]` base_url and currency, as providers see it."""
        site = self.methods.site
        return Site(base_url=site.base_url, currency=site.currency)

    @property
    def documents(self) -> PluginDocuments:
        """The documents of the plugin that registered this route: its providers get the same."""
        plugin = self.settings.get("route_plugins", {}).get(type(self))
        if plugin is None:
            raise RuntimeError(f"{type(self).__qualname__} is no plugin's route: it has no plugin documents")
        return self.storage.plugin_documents(plugin)

    def configured_methods(self, provider: str) -> list[Method]:
        """The methods the config file makes of provider `provider` (active or not), in id order."""
        table = self.methods
        bound = (*table.payment.values(), *table.shipping.values())
        return sorted((m.provider.method for m in bound if m.config.provider == provider),
                      key=lambda method: (method.kind, method.id))

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")

    async def prepare(self):
        # A verb this route does not have is 405 before anything else, token or not.
        verb = self.request.method.lower()
        if verb in VERBS and getattr(type(self), verb) is getattr(tornado.web.RequestHandler, verb):
            allowed = [v.upper() for v in VERBS
                       if getattr(type(self), v) is not getattr(tornado.web.RequestHandler, v)]
            raise APIError(405, f"method {self.request.method} not allowed here",
                           headers={"Allow": ", ".join(allowed)})
        if len(self.request.body or b"") > MAX_BODY_BYTES:
            raise APIError(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
        if self.auth != "public":
            await self._authenticate()
        await self.authorize()

    async def _authenticate(self) -> None:
        token = self._token()
        if self.auth == "admin":
            expected = self.settings.get("admin_token")
            if token and expected and hmac.compare_digest(token.encode(), expected.encode()):
                self.is_admin = True
                return
            # Without an admin token configured the admin API is closed: 401 to everyone
            # (CONTRACT.md), so a customer token is not told apart from none.
            if expected and token and await self.storage.customers.by_token_hash(hash_token(token)):
                raise APIError(403, "this endpoint needs the admin token")
            raise APIError(401, "authentication required: send 'Authorization: Token <admin token>'",
                           headers={"WWW-Authenticate": "Token"})
        customer = await self.find_customer(hash_token(token)) if token else None
        if customer is None:
            raise APIError(401, "authentication required: send 'Authorization: Token <your token>'",
                           headers={"WWW-Authenticate": "Token"})
        self.customer = customer
        logs.bind(customer_id=customer["_id"])

    async def authorize(self) -> None:
        """Checks of the subclass's own, run after authentication; raise APIError to refuse.

        Override this, never `prepare` (the app refuses a subclass that defines `prepare`).
        """

    async def find_customer(self, token_hash: str) -> dict | None:
        """The customer whose token hashes to `token_hash`, or None (-> 401)."""
        return await self.storage.customers.by_token_hash(token_hash)

    def _token(self) -> str | None:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "token" or not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        return token

    # -- JSON in
    def json_body(self, schema: Schema | None = None, *, partial: bool = False) -> dict:
        """The request body as a JSON object, validated by `schema` when given.

        Any Content-Type is read as JSON (curl's default form type included): the token
        header, not the content type, is what keeps browsers' cross-site posts out.
        """
        try:
            data = json.loads(self.request.body or b"null", parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise APIError(400, "the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise APIError(400, "the request body must be a JSON object")
        field = _unencodable_field(data)
        if field is not None:
            # A lone surrogate (`"\ud800"` in JSON) is valid JSON but no UTF-8: refused here, once for
            # every endpoint, before it reaches a schema, a log line or the database driver.
            raise APIError(400, f"invalid request: {field}: not valid UTF-8", {field: ["not valid UTF-8"]})
        if schema is None:
            return data
        try:
            return schema.load(data, partial=partial or None)
        except ValidationError as exc:
            fields = _flatten(exc.normalized_messages())
            first = next(iter(fields.items()))
            raise APIError(400, f"invalid request: {first[0]}: {first[1][0]}", fields) from None

    def int_argument(self, value: str, what: str) -> int:
        """A path or query id: a positive integer, else 404 as for a missing object."""
        if not (value.isascii() and value.isdigit()) or len(value) > 15:
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
        elif isinstance(exc, UNAVAILABLE_ERRORS):
            self.set_status(503)
            body["error"] = "service unavailable: the database does not answer"
        elif status_code >= 500:
            body["error"] = "internal server error"
        elif status_code == 405:
            body["error"] = f"method {self.request.method} not allowed here"
        elif status_code == 404:
            body["error"] = "not found"
        elif isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            body["error"] = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            body["error"] = self._reason or HTTPStatus(status_code).phrase
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(body, separators=(",", ":")))

    def log_exception(self, typ, value, tb):
        if isinstance(value, APIError):
            return
        if isinstance(value, UNAVAILABLE_ERRORS):
            # An outage (e.g. the embedded database restarting) is one line per request, not
            # a traceback each: the 503 says the rest.
            log.warning("%s %s: 503, the database does not answer (%s)", self.request.method,
                        self.request.path, type(value).__name__)
            return
        super().log_exception(typ, value, tb)


class NotFoundHandler(BaseHandler):
    """JSON 404 for any unknown route, whatever the verb.

    The one core handler that defines `prepare` (a 404 comes before the 405 check): it is
    the app's default handler, never a route, and public.
    """

    auth = "public"

    async def prepare(self):
        raise APIError(404, f"no such endpoint: {self.request.path}")


def _unencodable_field(data) -> str | None:
    """The path ("notes", "items.0.name") of the first string, key or value, that UTF-8
    cannot encode (a lone UTF-16 surrogate), else None. Iterative: bodies nest deep."""
    stack: list[tuple[str, object]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if not _encodes(value):
                return path or "_schema"
        elif isinstance(value, dict):
            for key, item in value.items():
                name = f"{path}.{key}" if path else key
                if not _encodes(key):
                    return (f"{path}.{_printable(key)}" if path else _printable(key))
                stack.append((name, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{index}" if path else str(index), item) for index, item in enumerate(value))
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(key: str) -> str:
    """A key that cannot be encoded, with its surrogates escaped so the answer can carry it."""
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


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
