"""Calling a payment gateway over HTTP: one session, a timeout on every call, clear errors.

    class MyGateway(PaymentProvider):
        settings_schema = MyGatewaySettings  # a GatewaySettings subclass: base_url, timeout

        def __init__(self, method, settings):
            super().__init__(method, settings)
            self.gateway = GatewayClient("MyGateway", settings.get("base_url") or LIVE_URL,
                                         timeout=settings["timeout"])

        async def startup(self):
            await self.gateway.open()

        async def close(self):
            await self.gateway.close()

        async def start(self, order, urls):
            answer = await self.gateway.request("POST", "/v1/payments", json={...})
            if answer.refused:  # a 4xx: the gateway's word on this request
                ...

`request` raises `GatewayError` (the core answers 503 and loses nothing) when the gateway
times out, cannot be reached, answers 5xx, or answers something that is not a JSON object.
A 4xx is returned, not raised: gateways answer business errors (declined, unknown payment,
bad parameter) with 4xx and a JSON body only the provider can read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from json import loads as json_loads  # `request` takes a parameter named json
from typing import Any, Self

import aiohttp
from marshmallow import Schema, fields, validate

from checkout_server.plugin.providers import GatewayError

__all__ = ["MAX_CALLS_PER_START", "MAX_TIMEOUT", "GatewayAnswer", "GatewayClient", "GatewaySettings"]

# The rule that keeps a checkout within its lock: a payment start makes at most
# MAX_CALLS_PER_START gateway calls (PayPal: token, create, and one token renewal and retry),
# each bounded by `timeout` <= MAX_TIMEOUT, so 4 x 15 s = 60 s = checkout_lock.start_deadline(),
# two thirds of checkout_lock.LOCK_SECONDS (90 s). The checkout also cuts a start off at that
# deadline, whatever a plugin does.
MAX_TIMEOUT = 15.0
MAX_CALLS_PER_START = 4


class GatewaySettings(Schema):
    """Settings every gateway method takes; subclass it and add the gateway's own."""

    # Overrides the gateway's host, e.g. a local fake: "http://127.0.0.1:9001".
    base_url = fields.String(load_default=None,
                             validate=validate.URL(require_tld=False, schemes={"http", "https"}))
    timeout = fields.Float(load_default=10.0, validate=validate.Range(min=0.01, max=MAX_TIMEOUT))  # s per call


@dataclass(frozen=True)
class GatewayAnswer:
    """A gateway's answer below 500: its HTTP status and its JSON object."""

    status: int
    body: dict[str, Any]

    @property
    def refused(self) -> bool:
        """A 4xx: the gateway refused this request (bad parameter, wrong state, declined)."""
        return self.status >= 400


class GatewayClient:
    """One gateway's HTTP client: an aiohttp session opened by `open()` and closed by `close()`.

    `name` is how error messages call the gateway ("Stripe did not answer in time").
    `headers` go with every request (say an API key); `timeout` bounds each call, in seconds.
    """

    def __init__(self, name: str, base_url: str, *, timeout: float = 10.0,
                 headers: Mapping[str, str] | None = None):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.headers = dict(headers or {})
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout, headers=self.headers)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def request(self, method: str, path: str, *, json: Any = None, data: Any = None,
                      headers: Mapping[str, str] | None = None) -> GatewayAnswer:
        """Send `method base_url+path` with a `json` or form/bytes `data` body; the answer below 500.

        Raises `GatewayError` on a timeout, a connection failure, a 5xx, or a body that is not
        a JSON object (whatever the status).
        """
        if self._session is None:
            raise GatewayError(f"the {self.name} method is not started")
        try:
            async with self._session.request(method, self.base_url + path, json=json, data=data,
                                             headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except TimeoutError:  # before ClientError: aiohttp's timeouts are both
            raise GatewayError(f"{self.name} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise GatewayError(f"{self.name} is unreachable: {exc.__class__.__name__}") from None
        if status >= 500:
            raise GatewayError(f"{self.name} answered HTTP {status}")
        try:
            body = json_loads(raw)
        except ValueError:
            raise GatewayError(f"{self.name} answered HTTP {status} with a body that is not JSON") from None
        if not isinstance(body, dict):
            raise GatewayError(f"{self.name} answered HTTP {status} with JSON that is not an object")
        return GatewayAnswer(status, body)

