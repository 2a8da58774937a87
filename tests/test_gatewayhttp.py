"""GatewayClient against a tiny local aiohttp server: answers, refusals, and every kind of fault."""

import contextlib
import socket
import time

import pytest
from aiohttp import web
from marshmallow import ValidationError, fields

from checkout_server.plugin.fake_gateway import STATE, new_app, run_fake
from checkout_server.plugin.gateway_http import (
    GatewayAnswer,
    GatewayClient,
    GatewaySettings,
)
from checkout_server.plugin.providers import GatewayError


@contextlib.asynccontextmanager
async def gateway():
    """A loopback server answering a few fixed ways; yields (base_url, requests it saw)."""
    seen: list[dict] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append({"method": request.method, "path": request.path, "headers": dict(request.headers),
                     "body": await request.read()})
        return web.json_response({"ok": True, "path": request.path})

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": {"type": "card_error", "code": "card_declined"}}, status=402)

    async def down(request: web.Request) -> web.Response:
        return web.json_response({"error": "maintenance"}, status=503)

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>upstream hiccup</html>", status=int(request.query.get("status", 200)),
                            content_type="text/html")

    async def a_list(request: web.Request) -> web.Response:
        return web.json_response([1, 2, 3])

    async def slow(request: web.Request) -> web.Response:
        await request.app[STATE].closing.wait()  # answers only when the test is over
        return web.json_response({})

    def make_app(base_url: str) -> web.Application:
        app = new_app(base_url)
        app.router.add_route("*", "/v1/echo", echo)
        app.router.add_post("/v1/refuse", refuse)
        app.router.add_get("/v1/down", down)
        app.router.add_get("/v1/html", html)
        app.router.add_get("/v1/list", a_list)
        app.router.add_get("/v1/slow", slow)
        return app

    async with run_fake(make_app) as server:
        yield server.base_url + "/", seen


@pytest.mark.gen_test(timeout=10)
async def test_sends_json_or_form_bodies_with_session_and_call_headers():
    async with gateway() as (url, seen), GatewayClient("Acme", url, timeout=2,
                                                       headers={"Authorization": "Bearer sk_1"}) as client:
        answer = await client.request("POST", "/v1/echo", json={"amount": 1000},
                                      headers={"Idempotency-Key": "k1"})
        assert answer == GatewayAnswer(200, {"ok": True, "path": "/v1/echo"}) and not answer.refused
        await client.request("PUT", "/v1/echo", data=[("a[b]", "1"), ("c", "x")])
        await client.request("GET", "/v1/echo")
    first, second, third = seen
    assert first["method"] == "POST" and first["body"] == b'{"amount": 1000}'
    assert first["headers"]["Authorization"] == "Bearer sk_1" and first["headers"]["Idempotency-Key"] == "k1"
    assert first["headers"]["Content-Type"] == "application/json"
    assert second["body"] == b"a%5Bb%5D=1&c=x" and second["headers"]["Authorization"] == "Bearer sk_1"
    assert "Idempotency-Key" not in second["headers"]  # call headers are per call
    assert third["method"] == "GET" and third["body"] == b""


@pytest.mark.gen_test(timeout=10)
async def test_a_4xx_is_returned_for_the_provider_to_read():
    async with gateway() as (url, _seen), GatewayClient("Acme", url) as client:
        answer = await client.request("POST", "/v1/refuse", json={})
    assert answer.refused and answer.status == 402
    assert answer.body["error"]["code"] == "card_declined"


@pytest.mark.gen_test(timeout=10)
@pytest.mark.parametrize("path, message", [
    ("/v1/down", "Acme answered HTTP 503"),
    ("/v1/html", "Acme answered HTTP 200 with a body that is not JSON"),
    ("/v1/html?status=404", "Acme answered HTTP 404 with a body that is not JSON"),
    ("/v1/list", "Acme answered HTTP 200 with JSON that is not an object"),
], ids=["5xx", "not-json", "4xx-not-json", "not-an-object"])
async def test_5xx_and_garbage_are_gateway_errors(path, message):
    async with gateway() as (url, _seen), GatewayClient("Acme", url) as client:
        with pytest.raises(GatewayError) as raised:
            await client.request("GET", path)
    assert str(raised.value) == message


@pytest.mark.gen_test(timeout=10)
async def test_a_call_slower_than_the_timeout_is_a_gateway_error_in_time():
    async with gateway() as (url, _seen), GatewayClient("Acme", url, timeout=0.3) as client:
        began = time.monotonic()
        with pytest.raises(GatewayError, match="^Acme did not answer in time$"):
            await client.request("GET", "/v1/slow")
        assert time.monotonic() - began < 3
        # The session is still usable after a timeout.
        assert (await client.request("GET", "/v1/echo")).status == 200


@pytest.mark.gen_test(timeout=10)
async def test_a_refused_connection_is_a_gateway_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening
        async with GatewayClient("Acme", closed, timeout=2) as client:
            with pytest.raises(GatewayError, match="^Acme is unreachable: Client"):
                await client.request("GET", "/v1/echo")


@pytest.mark.gen_test(timeout=10)
async def test_only_an_open_client_calls_and_close_is_safe_to_repeat():
    async with gateway() as (url, seen):
        client = GatewayClient("Acme", url)
        with pytest.raises(GatewayError, match="^the Acme method is not started$"):
            await client.request("GET", "/v1/echo")
        await client.open()
        await client.open()  # a second open keeps the session
        assert (await client.request("GET", "/v1/echo")).status == 200
        await client.close()
        await client.close()
        with pytest.raises(GatewayError, match="not started"):
            await client.request("GET", "/v1/echo")
    assert len(seen) == 1


def test_gateway_settings_are_checked_and_extended_by_subclasses():
    class AcmeSettings(GatewaySettings):
        api_key = fields.String(required=True)

    assert AcmeSettings().load({"api_key": "k"}) == {"api_key": "k", "base_url": None, "timeout": 10.0}
    loaded = AcmeSettings().load({"api_key": "k", "base_url": "http://127.0.0.1:9001", "timeout": 0.5})
    assert (loaded["base_url"], loaded["timeout"]) == ("http://127.0.0.1:9001", 0.5)
    for bad in ({"base_url": "ftp://example.com"}, {"timeout": 0}, {"timeout": 500}, {"retries": 3}):
        with pytest.raises(ValidationError) as refused:
            AcmeSettings().load({"api_key": "k", **bad})
        assert set(refused.value.messages) == set(bad)
