"""The HTTP server below the handlers: tornado's, answering what it refuses itself in JSON.

tornado's HTTP/1.1 reader answers a request it cannot read with a bare `400` and no body,
and drops the connection on a request head above its limit. Here each of those answers is
the API's error shape (`{"error": ...}`, CONTRACT.md), sent with `Connection: close`:

- 400: a malformed request line or header (a NUL, a control character), a bad or
  conflicting Content-Length, a bad chunk size, Content-Length with Transfer-Encoding;
- 413: a body above `MAX_BODY_BYTES`, as soon as its Content-Length or its chunk sizes
  say so, whatever its size: the body is not read (only drained for a moment after the
  answer, so that closing the socket does not destroy the answer in flight);
- 431: a request head (request line and headers) above `MAX_HEAD_BYTES`; one above
  `HEAD_READ_LIMIT` is cut off unanswered, as reading all of it is what the limit prevents;
- 501: a Transfer-Encoding other than chunked.

Slow clients are cut off (`ServerSettings`): a request head must be complete within
`idle_timeout` of the connection opening or its previous answer (so an idle keep-alive
connection closes too), and a body within `body_timeout` of its head.

Forwarded headers (X-Real-Ip, X-Forwarded-For, X-Scheme, X-Forwarded-Proto) set the
request's `remote_ip` and `protocol` only on connections from `TRUSTED_PROXIES`; from
anyone else they are ignored (tornado's own `xheaders` believes everyone).

The hooks are `HTTPServer.handle_stream` and `start_request`; what tornado reads from the
connection goes through `_GuardedStream`, which refuses what is too big or malformed and
writes tornado's bare 400 as the refusal's JSON answer (tests/test_http_server.py drives
each case over a raw socket).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import socket
from dataclasses import dataclass
from datetime import timedelta
from http import HTTPStatus

from tornado import gen, httputil
from tornado.httpserver import HTTPServer
from tornado.iostream import StreamClosedError

from checkout_server.config import ConfigError
from checkout_server.plugin.web import MAX_BODY_BYTES

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
HEAD_READ_LIMIT = 4 * MAX_HEAD_BYTES
# After a refusal: how long, and how much, of what the client still sends is read and dropped.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024

# What tornado writes when it cannot read a request (http1connection), replaced here.
_BARE_400 = b"HTTP/1.1 400 Bad Request\r\n\r\n"
_DIGITS = re.compile(rb"[0-9]+")
_HEX = re.compile(rb"[0-9a-fA-F]+")


@dataclass(frozen=True)
class ServerSettings:
    """The HTTP server's own settings, from the environment (README, "Environment")."""

    body_timeout: float = 30.0  # CHECKOUT_BODY_TIMEOUT
    idle_timeout: float = 60.0  # CHECKOUT_IDLE_TIMEOUT
    # TRUSTED_PROXIES: addresses and networks whose forwarded headers are believed; "*" is all.
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_environ(cls, environ=None) -> ServerSettings:
        """Read CHECKOUT_BODY_TIMEOUT, CHECKOUT_IDLE_TIMEOUT and TRUSTED_PROXIES; ConfigError if bad."""
        environ = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            body_timeout=_seconds(environ, "CHECKOUT_BODY_TIMEOUT", defaults.body_timeout),
            idle_timeout=_seconds(environ, "CHECKOUT_IDLE_TIMEOUT", defaults.idle_timeout),
            trusted_proxies=_networks(environ.get("TRUSTED_PROXIES", "")),
        )

    def trusts(self, address) -> bool:
        """Whether forwarded headers from the peer `address` ((ip, port, ...) or a string) count."""
        host = address[0] if isinstance(address, tuple) and address else address
        try:
            ip = ipaddress.ip_address(host)
        except (TypeError, ValueError):  # a Unix socket's peer has no address
            return False
        if getattr(ip, "ipv4_mapped", None) is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.trusted_proxies)


def _seconds(environ, name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value <= 3600:
        raise ConfigError(f"{name}={raw}: must be a number of seconds, above 0 and at most 3600")
    return value


def _networks(raw: str) -> tuple:
    networks = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        if entry == "*":
            networks += [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ConfigError(f"TRUSTED_PROXIES: {entry!r} is not an IP address or network "
                              f"(e.g. 10.0.0.5, 10.0.0.0/8, ::1; comma-separated; * for every peer)") from None
    return tuple(networks)


def build_http_server(app, settings: ServerSettings | None = None) -> CheckoutHTTPServer:
    """The service's HTTP server for `app` (not yet listening)."""
    return CheckoutHTTPServer(app, server_settings=settings or ServerSettings())


class CheckoutHTTPServer(HTTPServer):
    """tornado's HTTPServer with JSON refusals, time limits and per-peer forwarded headers."""

    def initialize(self, request_callback, server_settings: ServerSettings = ServerSettings(),
                   **kwargs) -> None:
        self.server_settings = server_settings
        exact = [str(n.network_address) for n in server_settings.trusted_proxies
                 if n.num_addresses == 1]
        super().initialize(
            request_callback,
            xheaders=False,  # decided per connection in start_request
            max_header_size=MAX_HEAD_BYTES,
            max_body_size=MAX_BODY_BYTES,
            body_timeout=server_settings.body_timeout,
            idle_connection_timeout=server_settings.idle_timeout,
            # Proxies of ours further down an X-Forwarded-For chain are skipped too.
            trusted_downstream=exact,
            **kwargs,
        )

    def handle_stream(self, stream, address) -> None:
        super().handle_stream(_GuardedStream(stream, self.server_settings.trusts(address)), address)

    def start_request(self, server_conn, request_conn):
        stream = request_conn.stream
        # HTTPServer reads `xheaders` once per request, here: set for this connection's peer.
        self.xheaders = getattr(stream, "from_trusted_proxy", False)
        delegate = super().start_request(server_conn, request_conn)
        return _FramingCheck(delegate, stream) if isinstance(stream, _GuardedStream) else delegate


class Refusal(httputil.HTTPInputError):
    """A request refused below the handlers, with the status and message of its JSON answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class _GuardedStream:
    """A connection's IOStream as tornado's HTTP/1 reader uses it.

    tornado reads a request head with `read_until_regex` and a chunk size with `read_until`
    (nothing else); both are checked here, and a refusal raised as an HTTPInputError, which
    tornado answers with its bare 400: `write` sends the refusal's JSON answer instead.
    Everything else is the stream's own.
    """

    def __init__(self, stream, from_trusted_proxy: bool):
        self._stream = stream
        self.from_trusted_proxy = from_trusted_proxy
        self._head = b""
        self._refusal: Refusal | None = None
        self._body_bytes = 0

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def refuse(self, status: int, message: str) -> Refusal:
        """The refusal to raise for this request (its answer is written when tornado gives up)."""
        self._refusal = Refusal(status, message)
        return self._refusal

    def read_until_regex(self, regex, max_bytes=None):
        # A new request's head: nothing refused, no body read yet.
        self._refusal, self._head, self._body_bytes = None, b"", 0
        return self._read_head(regex, max_bytes)

    async def _read_head(self, regex, max_bytes):
        # Up to HEAD_READ_LIMIT, so that a head over tornado's limit is answered, not dropped.
        head = await self._stream.read_until_regex(regex, max_bytes=HEAD_READ_LIMIT)
        if max_bytes is not None and len(head) > max_bytes:
            raise self.refuse(431, f"the request line and headers are larger than {max_bytes // 1024} KiB")
        self._head = head
        return head

    def read_until(self, delimiter, max_bytes=None):
        return self._read_chunk_size(delimiter, max_bytes)

    async def _read_chunk_size(self, delimiter, max_bytes):
        line = await self._stream.read_until(delimiter, max_bytes=max_bytes)
        size = line[:-len(delimiter)]
        if not _HEX.fullmatch(size):
            raise self.refuse(400, "malformed chunked body: a chunk size is not a hexadecimal number")
        self._body_bytes += int(size, 16)
        if self._body_bytes > MAX_BODY_BYTES:
            raise self.refuse(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
        return line

    def write(self, data):
        if data == _BARE_400:
            return self._answer_refusal()
        return self._stream.write(data)

    async def _answer_refusal(self) -> None:
        refusal = self._refusal or Refusal(400, _why_malformed(self._head))
        await answer_and_linger(self._stream, refusal.status, refusal.message)


class _FramingCheck(httputil.HTTPMessageDelegate):
    """Checks a request's framing headers before tornado reads its body (see `check_framing`)."""

    def __init__(self, delegate, stream: _GuardedStream):
        self.delegate = delegate
        self.stream = stream

    def headers_received(self, start_line, headers):
        check_framing(headers, self.stream)
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk):
        return self.delegate.data_received(chunk)

    def finish(self):
        return self.delegate.finish()

    def on_connection_close(self):
        return self.delegate.on_connection_close()


def check_framing(headers: httputil.HTTPHeaders, stream: _GuardedStream) -> None:
    """Raise the refusal for a Content-Length or Transfer-Encoding tornado would not read.

    Checked here, before tornado does, so that each gets its own status and message, and a
    declared size above the limit is a 413 before any of the body is read.
    """
    if "Transfer-Encoding" in headers:
        if "Content-Length" in headers:
            raise stream.refuse(400, "a request must not have both Content-Length and Transfer-Encoding")
        encoding = headers["Transfer-Encoding"]
        if encoding.lower() != "chunked":
            raise stream.refuse(501, f"Transfer-Encoding {encoding[:50]!r} is not supported: send chunked, "
                                     f"or a Content-Length")
    if "Content-Length" not in headers:
        return
    # Several Content-Length headers (joined with commas) must agree, as tornado requires.
    values = set(re.split(r",[ \t]*", headers["Content-Length"]))
    if len(values) > 1:
        raise stream.refuse(400, "conflicting Content-Length values")
    value = values.pop().encode("latin1")
    if not _DIGITS.fullmatch(value):
        raise stream.refuse(400, "Content-Length must be a non-negative integer")
    if int(value) > MAX_BODY_BYTES:
        raise stream.refuse(413, f"request body is larger than {MAX_BODY_BYTES} bytes")


def _why_malformed(head: bytes) -> str:
    """What tornado found wrong with a request it would not read, asked of its own parsers."""
    text = head.decode("latin1").lstrip("\r\n")
    eol = text.find("\n")
    try:
        httputil.parse_request_start_line(text[:eol].rstrip("\r"))
        httputil.HTTPHeaders.parse(text[eol:])
    except httputil.HTTPInputError as exc:
        return f"malformed HTTP request: {str(exc)[:200]}"
    return "malformed HTTP request"


async def answer_and_linger(stream, status: int, message: str) -> None:
    """Write a JSON error answer and half-close; then drop what the client still sends.

    Closing a socket whose client is still sending resets the connection, and a reset can
    destroy the answer before the client reads it: so the answer is followed by a FIN, and
    the rest of the request is read and dropped (at most LINGER_BYTES, for at most
    LINGER_SECONDS) before the caller closes the connection.
    """
    body = json.dumps({"error": message}, separators=(",", ":")).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            f"Content-Type: application/json; charset=UTF-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Cache-Control: no-store\r\n"
            f"Connection: close\r\n\r\n").encode()
    try:
        await stream.write(head + body)
        if stream.socket is None:
            return
        stream.socket.shutdown(socket.SHUT_WR)
        dropped = 0
        deadline = stream.io_loop.time() + LINGER_SECONDS
        while dropped < LINGER_BYTES:
            chunk = await gen.with_timeout(timedelta(seconds=max(0.0, deadline - stream.io_loop.time())),
                                           stream.read_bytes(64 * 1024, partial=True),
                                           quiet_exceptions=StreamClosedError)
            dropped += len(chunk)
    except (StreamClosedError, OSError, TimeoutError):
        pass  # gone, or done lingering: the caller closes the connection
