"""Request ids and log lines: every line made while serving a request names that request.

Each request runs in its own `contextvars` context holding a `RequestContext` (its id, its
route, and the customer and order key once known). `RequestContextFilter`, on the log
handler, copies those onto every record, whoever logs it: the core, a gateway call, a
plugin's own logger. `LOG_FORMAT=json` writes one JSON object per line; the default stays
readable text. Both formatters pass the finished line through `redact`, which masks token
headers, `key=value` credentials and every secret registered with `register_secrets` (the
config's gateway credentials and webhook secrets), so none of them reaches a log line even
from a traceback or a plugin's message.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import threading
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "LOG_FORMATS", "JsonFormatter", "RequestContext", "RequestContextFilter", "TextFormatter", "bind", "configure_logging",
    "current", "new_request_id", "redact", "register_secrets", "start_request",
]

LOG_FORMATS = ("text", "json")

# An incoming X-Request-Id is kept when it is this sane (a proxy's or a client's UUID, hex,
# base64); anything else (too long, spaces, control characters) is replaced, so a client can
# neither forge log lines nor bloat them.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=-]{0,127}")


@dataclass
class RequestContext:
    request_id: str
    method: str = ""
    route: str | None = None  # the route's template, e.g. /api/shop/orders/{order_key}
    customer_id: int | None = None
    order_key: str | None = None


_current: ContextVar[RequestContext | None] = ContextVar("checkout_request", default=None)


def new_request_id(incoming: str | None = None) -> str:
    """`incoming` if it is a sane id, else a fresh random one (32 hex digits)."""
    if incoming and _SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return secrets.token_hex(16)


def start_request(incoming_id: str | None, method: str = "") -> RequestContext:
    """Make a new request's context current; call it inside that request's own Context."""
    context = RequestContext(new_request_id(incoming_id), method)
    _current.set(context)
    return context


def current() -> RequestContext | None:
    """The request being served, or None (start-up, background jobs)."""
    return _current.get()


def bind(**fields) -> None:
    """Name what a request is about (`customer_id`, `order_key`, `route`) for its later log lines.

    Outside a request it does nothing, so domain code may call it from anywhere.
    """
    context = _current.get()
    if context is not None:
        for name, value in fields.items():
            setattr(context, name, value)


# ---- secrets never logged

# `Authorization: Token abc`, `Bearer abc`, `Basic abc`; `secret=abc`, `"api_key": "abc"`;
# card numbers. Credential names in prose ("the webhook secret is wrong") stay readable.
_CREDENTIAL = r"(?:secret|password|passwd|api[_-]?key|access[_-]?token|client[_-]?secret|merchant[_-]?id|token)"
_PATTERNS = [
    (re.compile(r"\b(Token|Bearer|Basic)(\s+)[A-Za-z0-9._~+/=-]{12,}"), r"\1\2[redacted]"),
    (re.compile(rf"(?i)(\b\w*{_CREDENTIAL}=)[^\s&,;]+"), r"\1[redacted]"),
    (re.compile(rf"(?i)([\"']\w*{_CREDENTIAL}[\"']\s*:\s*[\"'])[^\"']+"), r"\1[redacted]"),
    # 13 to 19 digits, possibly grouped by spaces or dashes.
    (re.compile(r"\b\d(?:[ -]?\d){12,18}\b"), "[redacted card number]"),
]
_registered: set[str] = set()
_registered_pattern: re.Pattern | None = None
_registered_lock = threading.Lock()
# Shorter values are too likely to be ordinary words or numbers to mask everywhere.
MIN_SECRET_LENGTH = 6


def register_secrets(values: Iterable) -> None:
    """Mask these values (gateway credentials, webhook secrets, tokens) in every log line."""
    global _registered_pattern
    new = {str(v) for v in values if isinstance(v, str | bytes) and len(v) >= MIN_SECRET_LENGTH}
    new = {v.decode() if isinstance(v, bytes) else v for v in new}
    with _registered_lock:
        if new <= _registered:
            return
        _registered.update(new)
        # Longest first, so a secret containing another is masked whole.
        alternatives = "|".join(re.escape(v) for v in sorted(_registered, key=len, reverse=True))
        _registered_pattern = re.compile(alternatives)


def redact(text: str) -> str:
    """`text` with every registered secret and anything shaped like a credential masked."""
    pattern = _registered_pattern
    if pattern is not None:
        text = pattern.sub("[redacted]", text)
    for regex, replacement in _PATTERNS:
        text = regex.sub(replacement, text)
    return text


# ---- records and formats

_CONTEXT_FIELDS = ("request_id", "route", "customer_id", "order_key")


class RequestContextFilter(logging.Filter):
    """Adds the current request's id, route, customer id and order key to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        for name in _CONTEXT_FIELDS:
            # A field given with `extra=` (the access line's route) wins over the context's.
            if getattr(record, name, None) is None:
                setattr(record, name, getattr(context, name, None) if context is not None else None)
        return True


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [request id]: message`, the request id only inside a request."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        record.request_tag = f" [{request_id}]" if request_id else ""
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*_CONTEXT_FIELDS, "method", "path", "status", "duration_ms"):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


def configure_logging(level: str = "INFO", log_format: str = "text", stream=None) -> None:
    """The process's log handler: `log_format` "text" or "json", request fields on every line.

    Like `logging.basicConfig`, it leaves a root logger that already has handlers (an
    embedding application's, a test runner's) as it is.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT={log_format}: use text or json")
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestContextFilter())
    root.addHandler(handler)
    root.setLevel(level)
