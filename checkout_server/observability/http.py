"""The HTTP side of request ids, access lines and request metrics (Tornado glue for app.py).

- `RequestContextDelegate` wraps each request's message delegate so that the whole request,
  from its headers to its last log line, runs in a `contextvars.Context` of its own, with a
  `RequestContext` (logs.start_request) current in it. The handler's task copies that
  Context, so every line logged while serving the request carries its id, whoever logs it.
- `RequestIdTransform` adds `X-Request-Id` to every answer, plugin routes and 404s included.
- `RouteTemplates` names each route by its template (`/api/shop/orders/{order_key}`, the
  path parameters named after the handler's arguments): the `route` of log lines and metrics,
  and the paths of the OpenAPI document.
- `log_request` writes the access line (never the query string: return tokens and gateway
  references travel there) and counts the request.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import re
from dataclasses import dataclass
from urllib.parse import unquote

import tornado.web
from tornado import httputil
from tornado.routing import PathMatches

from checkout_server.observability import logs, metrics

access_log = logging.getLogger("tornado.access")

REQUEST_ID_HEADER = "X-Request-Id"
VERBS = ("get", "post", "put", "patch", "delete", "head", "options")
# The route of a request no route matched (the JSON 404 handler).
UNMATCHED = "unmatched"


class RequestContextDelegate(httputil.HTTPMessageDelegate):
    """Runs one request's delegate in a Context of its own, with its RequestContext current."""

    def __init__(self, delegate: httputil.HTTPMessageDelegate):
        self.delegate = delegate
        self.context = contextvars.Context()

    def headers_received(self, start_line, headers):
        self.context.run(logs.start_request, headers.get(REQUEST_ID_HEADER), getattr(start_line, "method", ""))
        return self.context.run(self.delegate.headers_received, start_line, headers)

    def data_received(self, chunk):
        return self.context.run(self.delegate.data_received, chunk)

    def finish(self):
        return self.context.run(self.delegate.finish)

    def on_connection_close(self):
        return self.context.run(self.delegate.on_connection_close)


class RequestIdTransform(tornado.web.OutputTransform):
    """Adds the request's id to its answer's headers."""

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        context = logs.current()
        if context is not None:
            headers[REQUEST_ID_HEADER] = context.request_id
        return status_code, headers, chunk


@dataclass(frozen=True)
class Route:
    pattern: str  # the route's regular expression, as registered
    template: str  # OpenAPI-style: /api/shop/orders/{order_key}
    handler: type
    parameters: tuple[str, ...]  # path parameter names, in order


def path_parameter_names(handler: type, groups: int) -> tuple[str, ...]:
    """The names the handler's verb methods give their path arguments (`get(self, order_key)`)."""
    for verb in VERBS:
        method = getattr(handler, verb, None)
        if method is None or method is getattr(tornado.web.RequestHandler, verb, None):
            continue
        names = [p.name for p in inspect.signature(method).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][1:]
        if len(names) >= groups:
            return tuple(names[:groups])
    return tuple(f"param{index + 1}" for index in range(groups))


def route_for(pattern: str, handler: type) -> Route:
    matcher = PathMatches(pattern)
    if matcher.regex.groupindex:
        names = tuple(sorted(matcher.regex.groupindex, key=matcher.regex.groupindex.get))
    else:
        names = path_parameter_names(handler, matcher.regex.groups)
    reversed_path = matcher.reverse(*(f"{{{name}}}" for name in names)) if names else matcher.reverse()
    # A pattern `reverse` cannot rebuild (nested groups): its regex stands for it.
    template = unquote(reversed_path) if reversed_path is not None else pattern.rstrip("$")
    return Route(pattern, template, handler, names)


class RouteTemplates:
    """Which route a request matched, by handler class and path."""

    def __init__(self, routes: list):
        self.routes = [route_for(spec[0], spec[1]) for spec in routes if isinstance(spec[0], str)]
        self._by_handler: dict[type, list[tuple[re.Pattern, Route]]] = {}
        for route in self.routes:
            regex = re.compile(route.pattern if route.pattern.endswith("$") else route.pattern + "$")
            self._by_handler.setdefault(route.handler, []).append((regex, route))

    def template(self, handler_class: type, path: str) -> str:
        candidates = self._by_handler.get(handler_class)
        if not candidates:
            return UNMATCHED
        if len(candidates) == 1:
            return candidates[0][1].template
        for regex, route in candidates:
            if regex.match(path):
                return route.template
        return UNMATCHED


def log_request(handler: tornado.web.RequestHandler) -> None:
    """The access line and the request metrics, once per answered request."""
    status = handler.get_status()
    seconds = handler.request.request_time()
    context = logs.current()
    route = (context.route if context is not None else None) or UNMATCHED
    method = handler.request.method or ""
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    access_log.log(level, "%d %s %s %.2fms", status, method, handler.request.path, 1000.0 * seconds,
                   extra={"route": route, "method": method, "path": handler.request.path, "status": status,
                          "duration_ms": round(1000.0 * seconds, 2)})
    metrics.request_finished(route, method if method in _KNOWN_METHODS else "other", status, seconds)


# Request methods counted by name; anything else a client invents is "other" (bounded labels).
_KNOWN_METHODS = frozenset(verb.upper() for verb in VERBS)
