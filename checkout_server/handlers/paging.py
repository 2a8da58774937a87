"""Query parameters of list endpoints (`?limit=`, `?skip=`, filters), checked alike everywhere."""

from __future__ import annotations

from checkout_server.plugin.web import APIError, BaseHandler
from checkout_server.schemas import (
    ORDERS_PAGE_DEFAULT,
    ORDERS_PAGE_MAX,
    ORDERS_SKIP_MAX,
)

# Pages: `?limit=` items (default, at most) from `?skip=` on (the bounds the OpenAPI document's
# query schemas state).
DEFAULT_PAGE, MAX_PAGE, MAX_SKIP = ORDERS_PAGE_DEFAULT, ORDERS_PAGE_MAX, ORDERS_SKIP_MAX


def query_error(name: str, message: str) -> APIError:
    return APIError(400, f"invalid query: {name}: {message}", {name: [message[0].upper() + message[1:] + "."]})


class PagedHandler(BaseHandler):
    """`?limit=&skip=` pages, and other query parameters checked one by one (400 naming each)."""

    def page(self) -> tuple[int, int]:
        return (self.count_argument("limit", DEFAULT_PAGE, 1, MAX_PAGE),
                self.count_argument("skip", 0, 0, MAX_SKIP))

    def one_argument(self, name: str, expected: str) -> str | None:
        values = self.get_query_arguments(name)
        if len(values) > 1:
            raise query_error(name, f"must be {expected}, given once")
        return values[0] if values else None

    def count_argument(self, name: str, default: int, low: int, high: int, digits: int = 7) -> int:
        expected = f"an integer from {low} to {high}"
        raw = self.one_argument(name, expected)
        if raw is None:
            return default
        if not (raw.isascii() and raw.isdigit() and len(raw) <= digits and low <= int(raw) <= high):
            raise query_error(name, f"must be {expected}, given once")
        return int(raw)

    def refuse_unknown_arguments(self, known: tuple[str, ...]) -> None:
        unknown = sorted(set(self.request.query_arguments) - set(known))
        if unknown:
            raise APIError(400, f"invalid query: unknown parameter {unknown[0]!r}; known: {', '.join(known)}",
                           {name: ["Unknown parameter."] for name in unknown})
