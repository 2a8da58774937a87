"""The HTTP server below the handlers (checkout_server/http_server.py), over raw sockets:
JSON answers to what tornado refuses itself, slow clients cut off, forwarded headers
believed only from configured proxies."""

from __future__ import annotations

import asyncio
import json
import re
from contextlib import asynccontextmanager

import checkout_fixtures as kit
import pytest
import tornado.web
from tornado.httpclient import AsyncHTTPClient
from tornado.testing import bind_unused_port

from checkout_server.cli import main
from checkout_server.config import ConfigError
from checkout_server.http_server import ServerSettings, build_http_server

# Far longer than any answer here takes; a test that hits it has failed.
PATIENCE = 20


@asynccontextmanager
async def serving(app, settings: ServerSettings | None = None):
    sock, port = bind_unused_port()
    server = build_http_server(app, settings)
    server.add_sockets([sock])
    try:
        yield port
    finally:
        server.stop()
        await server.close_all_connections()


@asynccontextmanager
async def shop_server(settings: ServerSettings | None = None):
    """The service's app (kit.shop) behind the service's HTTP server."""
    async with kit.shop() as s, serving(s.app, settings) as port:
        yield s, port


async def exchange(port: int, data: bytes) -> bytes:
    """Send `data` on a new connection; everything the server sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(-1), PATIENCE)
    finally:
        writer.close()


def parse(raw: bytes) -> tuple[int, dict[str, str], object]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def request(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode("latin1") + b"\r\n" + body


def assert_json_error(raw: bytes, status: int, words: str) -> None:
    code, headers, body = parse(raw)
    assert code == status, raw
    assert headers["Content-Type"] == "application/json; charset=UTF-8"
    assert headers["Connection"] == "close"
    assert set(body) == {"error"} and words in body["error"], body


# -- JSON at every layer (issue 9 item 6)

BAD_REQUESTS = {
    "a control character in a header": (
        b"GET /health HTTP/1.1\r\nHost: shop\r\nX-Note: a\x01b\r\n\r\n", 400, "Invalid header value"),
    "a NUL in the request line": (
        b"GET /hea\x00lth HTTP/1.1\r\nHost: shop\r\n\r\n", 400, "request line"),
    "a Content-Length that is not a number": (
        request("POST /api/shop/cart/items HTTP/1.1\nHost: shop\nContent-Length: 12abc\n"), 400,
        "Content-Length must be a non-negative integer"),
    "a negative Content-Length": (
        request("POST /api/shop/cart/items HTTP/1.1\nHost: shop\nContent-Length: -1\n"), 400,
        "Content-Length must be a non-negative integer"),
    "conflicting Content-Lengths": (
        request("POST /api/shop/cart/items HTTP/1.1\nHost: shop\nContent-Length: 2\nContent-Length: 3\n"),
        400, "conflicting Content-Length"),
    "a bad chunk size": (
        request("POST /api/shop/cart/items HTTP/1.1\nHost: shop\nTransfer-Encoding: chunked\n", b"zz\r\n{}\r\n"),
        400, "chunk size"),
    "Content-Length with Transfer-Encoding": (
        request("POST /api/shop/cart/items HTTP/1.1\nHost: shop\nContent-Length: 2\nTransfer-Encoding: chunked\n"),
        400, "both Content-Length and Transfer-Encoding"),
    "an unknown Transfer-Encoding": (
        request("POST /api/shop/cart/items HTTP/1.1\nHost: shop\nTransfer-Encoding: gzip\n"), 501,
        "not supported"),
    # Only the head is sent: the answer must not wait for a body it will not read.
    "a Content-Length over 64 KiB": (
        request("POST /api/shop/cart/items HTTP/1.1\nHost: shop\nContent-Length: 65537\n"), 413,
        "larger than 65536 bytes"),
    "a Content-Length of 2 GiB": (
        request("POST /api/shop/cart/items HTTP/1.1\nHost: shop\nContent-Length: 2147483648\n"), 413,
        "larger than 65536 bytes"),
    "a chunk over 64 KiB": (
        request("POST /api/shop/cart/items HTTP/1.1\nHost: shop\nTransfer-Encoding: chunked\n", b"10001\r\n"),
        413, "larger than 65536 bytes"),
    "chunks adding up to over 64 KiB": (
        request("POST /api/shop/cart/items HTTP/1.1\nHost: shop\nTransfer-Encoding: chunked\n",
                b"8000\r\n" + b" " * 0x8000 + b"\r\n8001\r\n"), 413, "larger than 65536 bytes"),
    "a header over 64 KiB": (
        request("GET /health HTTP/1.1\nHost: shop\nX-Padding: " + "a" * 65536 + "\n"), 431,
        "larger than 64 KiB"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
@pytest.mark.gen_test(timeout=60)
async def test_what_tornado_refuses_is_answered_in_json(case):
    data, status, words = BAD_REQUESTS[case]
    async with shop_server() as (_, port):
        assert_json_error(await exchange(port, data), status, words)


@pytest.mark.gen_test(timeout=60)
async def test_a_big_body_sent_whole_gets_its_413():
    # The client sends all of it at once; the answer still arrives before the connection closes.
    async with shop_server() as (_, port):
        body = b"x" * (1024 * 1024 + 1)
        head = request(f"POST /api/shop/cart/items HTTP/1.1\nHost: shop\nContent-Length: {len(body)}\n")
        assert_json_error(await exchange(port, head + body), 413, "larger than 65536 bytes")


@pytest.mark.gen_test(timeout=60)
async def test_good_requests_still_pass_keep_alive_and_chunked():
    async with shop_server() as (s, port):
        product = json.dumps({"name": "Mug", "price": 900, "stock": 4}).encode()
        token = s.ADMIN_TOKEN
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (product[:10], product[10:])) + b"0\r\n\r\n"
        raw = await exchange(port, (
            request("GET /health HTTP/1.1\nHost: shop\n")
            + request(f"POST /api/admin/products HTTP/1.1\nHost: shop\nAuthorization: Token {token}\n"
                      f"Transfer-Encoding: chunked\n", chunked)
            + request(f"POST /api/admin/products HTTP/1.1\nHost: shop\nAuthorization: Token {token}\n"
                      f"Content-Length: {len(product)}\nConnection: close\n", product)))
        statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]
        assert statuses == [200, 201, 201], raw


# -- slow clients (issue 9 item 7): short limits, and the test waits for the server's close

SHORT = ServerSettings(body_timeout=0.5, idle_timeout=0.5)


@pytest.mark.parametrize("data", [
    b"",  # an idle connection
    b"GET /health HTTP/1.1\r\nHost: sh",  # a head that never ends
    request("POST /api/shop/cart/items HTTP/1.1\nHost: shop\nContent-Length: 40\n", b"{"),  # a trickled body
], ids=["idle", "slow head", "slow body"])
@pytest.mark.gen_test(timeout=60)
async def test_slow_clients_are_cut_off(data):
    async with kit.shop() as s, serving(s.app, SHORT) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(data)
            # Closed by the server (EOF, or a reset), not by our patience running out.
            try:
                received = await asyncio.wait_for(reader.read(-1), PATIENCE)
            except ConnectionResetError:
                received = b""
            assert received == b""
        finally:
            writer.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_keep_alive_connection_is_closed_once_idle():
    async with kit.shop() as s, serving(s.app, SHORT) as port:
        raw = await exchange(port, request("GET /health HTTP/1.1\nHost: shop\n"))
        assert raw.startswith(b"HTTP/1.1 200 ")  # answered, then closed when it went idle


def test_timeouts_and_proxies_from_the_environment():
    settings = ServerSettings.from_environ({"CHECKOUT_BODY_TIMEOUT": "12.5", "CHECKOUT_IDLE_TIMEOUT": "75",
                                            "TRUSTED_PROXIES": "10.0.0.0/8, ::1,192.168.1.7"})
    assert (settings.body_timeout, settings.idle_timeout) == (12.5, 75)
    assert settings.trusts(("10.1.2.3", 5000)) and settings.trusts(("::1", 5000, 0, 0))
    assert settings.trusts(("::ffff:192.168.1.7", 1)) and not settings.trusts(("192.168.1.8", 1))
    assert ServerSettings.from_environ({}) == ServerSettings()
    assert ServerSettings().body_timeout == 30 and ServerSettings().idle_timeout == 60
    assert not ServerSettings().trusts(("127.0.0.1", 1))
    assert ServerSettings.from_environ({"TRUSTED_PROXIES": "*"}).trusts(("203.0.113.9", 1))


@pytest.mark.parametrize("env", [{"CHECKOUT_BODY_TIMEOUT": "0"}, {"CHECKOUT_IDLE_TIMEOUT": "soon"},
                                 {"CHECKOUT_BODY_TIMEOUT": "-5"}, {"TRUSTED_PROXIES": "proxy.internal"}])
def test_bad_server_settings_stop_serve_with_exit_2(env, monkeypatch, capsys, tmp_path):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError):
        ServerSettings.from_environ()
    monkeypatch.setenv("CHECKOUT_DATA_DIR", str(tmp_path))
    assert main(["serve", "--config", "config/checkout.toml", "--port", "0"]) == 2
    assert next(iter(env)) in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before the database started


# -- forwarded headers (issue 9 item 8)

class WhoAsks(tornado.web.RequestHandler):
    def get(self):
        self.write({"ip": self.request.remote_ip, "protocol": self.request.protocol})


FORWARDED = {"X-Real-Ip": "203.0.113.9", "X-Forwarded-For": "198.51.100.1, 203.0.113.9",
             "X-Forwarded-Proto": "https"}


async def who_asks(settings: ServerSettings, headers: dict) -> dict:
    async with serving(tornado.web.Application([("/", WhoAsks)]), settings) as port:
        client = AsyncHTTPClient(force_instance=True)
        try:
            response = await client.fetch(f"http://127.0.0.1:{port}/", headers=headers)
        finally:
            client.close()
        return json.loads(response.body)


@pytest.mark.gen_test(timeout=60)
async def test_forwarded_headers_are_ignored_unless_from_a_trusted_proxy():
    # By default nobody is trusted: a client cannot pose as another address or as https.
    assert await who_asks(ServerSettings(), FORWARDED) == {"ip": "127.0.0.1", "protocol": "http"}
    other_proxy = ServerSettings.from_environ({"TRUSTED_PROXIES": "10.0.0.0/8"})
    assert await who_asks(other_proxy, FORWARDED) == {"ip": "127.0.0.1", "protocol": "http"}


@pytest.mark.gen_test(timeout=60)
async def test_forwarded_headers_from_a_trusted_proxy_are_believed():
    local_proxy = ServerSettings.from_environ({"TRUSTED_PROXIES": "127.0.0.1"})
    assert await who_asks(local_proxy, FORWARDED) == {"ip": "203.0.113.9", "protocol": "https"}
    # X-Forwarded-For alone: its last address (the one the proxy added), skipping our proxies.
    chain = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 127.0.0.1"}
    assert (await who_asks(local_proxy, chain))["ip"] == "203.0.113.7"
