"""A kit for local fake payment gateways: fault switches, a loopback runner, a shopper.

A gateway plugin ships a fake of its gateway as `make_app(base_url) -> aiohttp.web.Application`
(registered with the `register_fake_gateways` hook). The fake keeps a `FakeState` in
`app[STATE]`; its API handlers are wrapped with `fake_api(operation)` so the same switches
work on every fake:

    async with run_fake(make_app) as fake:
        fake.state.faults = Faults(status=503, only={"create"})
        ...

`add_payment_page` gives a fake the shopper's approve/decline/cancel page, `json_object`
and `record_or_404` serve its API handlers, and `shopper_choice` plays the browser on it.

The switches can also be flipped over HTTP (`POST /__fake__/faults` with a JSON object of
`Faults` fields), which is how a storefront developer uses `checkout-server fake-gateway`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import html
import json
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit, urlunsplit

from aiohttp import ClientSession, ClientTimeout, web

__all__ = [
    "STATE",
    "FakeState",
    "Faults",
    "RunningFake",
    "add_payment_page",
    "approval_page",
    "collect_fake_gateways",
    "fake_api",
    "json_object",
    "new_app",
    "record_or_404",
    "run_fake",
    "serve_until_stopped",
    "shopper_choice",
    "transport_faults",
    "with_query",
]


@dataclass
class Faults:
    """What the fake does wrong. Transport faults hit the operations in `only` (all if None)."""

    delay: float = 0.0  # seconds to wait before answering (beyond the client's timeout)
    status: int | None = None  # answer this HTTP status (a 5xx) instead of the real answer
    malformed: bool = False  # answer a body that is not JSON
    amount_delta: int = 0  # the gateway's recorded/reported amount differs by this much
    currency: str | None = None  # the gateway records/reports this currency instead
    decline: bool = False  # the shopper's payment is declined even when they approve
    only: frozenset[str] | None = None

    def __post_init__(self):
        if self.only is not None:
            self.only = frozenset(self.only)

    def hits(self, operation: str) -> bool:
        return self.only is None or operation in self.only


def transport_faults(delay: float = 2.0) -> dict[str, Faults]:
    """New `Faults` for what every gateway must survive, by name: "timeout", "5xx", "malformed".

    `delay` must exceed the method's `timeout`. Fresh instances on each call: a test may set
    `only` on one without touching another module's.
    """
    return {"timeout": Faults(delay=delay), "5xx": Faults(status=503), "malformed": Faults(malformed=True)}


@dataclass
class FakeState:
    """What a fake gateway remembers: its own URL, switches, records, and the calls it saw."""

    base_url: str
    faults: Faults = field(default_factory=Faults)
    records: dict[str, dict] = field(default_factory=dict)  # payment id -> gateway record
    calls: list[tuple[str, dict]] = field(default_factory=list)  # (operation, request headers)
    idempotency: dict[str, tuple] = field(default_factory=dict)  # idempotency key -> first answer
    webhook: tuple[str, str] | None = None  # (url, secret) the fake notifies, if any
    closing: asyncio.Event = field(default_factory=asyncio.Event)  # cuts delays short on stop

    def count(self, operation: str) -> int:
        return sum(1 for op, _ in self.calls if op == operation)


STATE = web.AppKey("fake_state", FakeState)


def new_app(base_url: str) -> web.Application:
    """An application with a `FakeState` and the fault control routes."""
    app = web.Application()
    app[STATE] = FakeState(base_url.rstrip("/"))
    app.router.add_get("/__fake__/faults", _get_faults)
    app.router.add_post("/__fake__/faults", _set_faults)
    return app


async def _get_faults(request: web.Request) -> web.Response:
    faults = dataclasses.asdict(request.app[STATE].faults)
    faults["only"] = sorted(faults["only"]) if faults["only"] is not None else None
    return web.json_response(faults)


async def _set_faults(request: web.Request) -> web.Response:
    try:
        request.app[STATE].faults = Faults(**(await request.json()))
    except (ValueError, TypeError) as exc:
        return web.json_response({"error": f"bad faults: {exc}"}, status=400)
    return await _get_faults(request)


def fake_api(operation: str):
    """Wrap an API handler: record the call, then apply the transport faults that hit it."""

    def wrap(handler: Callable):
        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            state = request.app[STATE]
            state.calls.append((operation, dict(request.headers)))
            faults = state.faults
            if faults.hits(operation):
                if faults.delay:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(state.closing.wait(), faults.delay)
                if faults.status:
                    return web.json_response({"error": "fake gateway fault"}, status=faults.status)
                if faults.malformed:
                    return web.Response(text="<html>upstream hiccup", content_type="application/json")
            return await handler(request)
        return wrapped
    return wrap


def approval_page(title: str, amount: str, choices: dict[str, str]) -> web.Response:
    """The fake's payment page: one form posting `choice` back to the same URL."""
    buttons = "".join(f'<button name="choice" value="{html.escape(value)}">{html.escape(label)}</button> '
                      for value, label in choices.items())
    body = (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1><p>Amount: <b>{html.escape(amount)}</b></p>"
            f'<form method="post">{buttons}</form>'
            f"<p><small>A local fake gateway: no money moves.</small></p></body></html>")
    return web.Response(text=body, content_type="text/html")


def add_payment_page(app: web.Application, path: str, *,
                     payable: Callable[[web.Request], dict | None],
                     page: Callable[[dict], web.Response],
                     choose: Callable[[web.Request, dict, str | None], str]) -> None:
    """The shopper's payment page at `path`: GET shows it, POST applies the button pressed.

    `payable(request)` finds the payment record, or None when it is unknown or no longer
    waits for the shopper (both pages then answer 410 Gone); `page(record)` renders it
    (usually with `approval_page`); `choose(request, record, choice)` records the choice and
    returns where the browser goes next (answered 303).
    """

    def waiting(request: web.Request) -> dict:
        record = payable(request)
        if record is None:
            raise web.HTTPGone(text="This payment is no longer waiting for the shopper.")
        return record

    async def show(request: web.Request) -> web.Response:
        return page(waiting(request))

    async def submit(request: web.Request) -> web.Response:
        record = waiting(request)
        choice = (await request.post()).get("choice")
        raise web.HTTPSeeOther(choose(request, record, choice if isinstance(choice, str) else None))

    app.router.add_get(path, show)
    app.router.add_post(path, submit)


async def json_object(request: web.Request) -> dict | None:
    """The request's JSON body if it is an object, else None (the fake answers its own 4xx)."""
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def record_or_404(request: web.Request, record_id: str | None, not_found: dict) -> dict:
    """The fake's record `record_id`, or a 404 answering the gateway's own JSON body `not_found`."""
    record = request.app[STATE].records.get(record_id)
    if record is None:
        raise web.HTTPNotFound(text=json.dumps(not_found), content_type="application/json")
    return record


@dataclass
class RunningFake:
    base_url: str
    app: web.Application

    @property
    def state(self) -> FakeState:
        return self.app[STATE]


@contextlib.asynccontextmanager
async def run_fake(make_app: Callable[[str], web.Application], host: str = "127.0.0.1", port: int = 0):
    """Serve `make_app(base_url)` on `host:port` (0: any free port) for the block's duration."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    base_url = f"http://{host}:{sock.getsockname()[1]}"
    app = make_app(base_url)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield RunningFake(base_url, app)
    finally:
        app[STATE].closing.set()
        await runner.cleanup()
        sock.close()


def collect_fake_gateways(plugin_manager) -> dict[str, Callable[[str], web.Application]]:
    """{name: make_app} of every fake the plugins register (`register_fake_gateways`)."""
    fakes: dict[str, Callable[[str], web.Application]] = {}

    def register(name: str, make_app: Callable[[str], web.Application]) -> None:
        if name in fakes and fakes[name] is not make_app:
            raise ValueError(f"two fake gateways are named {name!r}")
        fakes[name] = make_app

    plugin_manager.hook.register_fake_gateways(register=register)
    return fakes


async def serve_until_stopped(make_app, host: str, port: int, name: str) -> None:
    """Run a fake until SIGINT or SIGTERM, telling the developer where it is."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with run_fake(make_app, host, port) as fake:
        print(f"fake {name} gateway listening on {fake.base_url}\n"
              f"  in the payment method's settings: base_url = \"{fake.base_url}\"\n"
              f"  fault switches: GET/POST {fake.base_url}/__fake__/faults", flush=True)
        await stop.wait()


async def shopper_choice(page_url: str, choice: str) -> str:
    """What a browser does on the fake's page: post `choice`, return where it is sent next."""
    async with ClientSession(timeout=ClientTimeout(total=10)) as session:
        async with session.get(page_url) as page:
            text = await page.text()
            if page.status != 200 or f'value="{choice}"' not in text:
                raise AssertionError(f"no {choice!r} button on {page_url}: {page.status} {text[:200]}")
        async with session.post(page_url, data={"choice": choice}, allow_redirects=False) as answer:
            location = answer.headers.get("Location")
            if answer.status not in (302, 303) or not location:
                raise AssertionError(f"{choice!r} on {page_url} answered {answer.status}")
            return location


def with_query(url: str, params: dict) -> str:
    """`url` with `params` added to its query string (keeping what it already carries)."""
    parts = urlsplit(url)
    extra = urlencode(params)
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))
