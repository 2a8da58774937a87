"""The demo storefront's files: the page at / and /orders/{key}, its script and stylesheet.

Served only while `[site] storefront` is on (`serve --demo` turns it on); otherwise these
paths answer the JSON 404 of any unknown route. The page talks to the JSON API with a
customer's token. In demo mode the demo customer's token is written into the page, but only
for a browser on this machine: the TCP peer must be a loopback address (the socket's own,
not X-Forwarded-For, which a client writes), the Host header a loopback name and no proxy's
forwarding header present, so neither another machine (directly or through a proxy on this
one) nor a web page that rebinds its DNS name to 127.0.0.1 gets it.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from tornado.escape import xhtml_escape

from checkout_server import storefront
from checkout_server.plugin.api_docs import api_operation
from checkout_server.plugin.web import APIError, BaseHandler
from checkout_server.response_schemas import ErrorAnswer

TOKEN_SLOT = b"<!-- demo-token -->"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
FORWARDING_HEADERS = ("X-Forwarded-For", "X-Real-Ip", "Forwarded")
SECURITY_HEADERS = {
    # Only this origin's script, style and API; no framing (clickjacking the Place order button).
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def is_loopback(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def may_see_demo_token(peer: str | None, host_header: str, forwarded: bool = False) -> bool:
    """Whether a request from TCP peer `peer` with this Host header is a browser on this machine.

    `forwarded`: the request names another client (X-Forwarded-For, X-Real-Ip, Forwarded):
    it came through a proxy, perhaps from anywhere, so no token whatever the peer.
    """
    if forwarded:
        return False
    try:
        host = urlsplit(f"//{host_header}").hostname
    except ValueError:  # a malformed Host, e.g. an unclosed "[::1"
        return False
    return is_loopback(peer) and host in LOOPBACK_NAMES


class StorefrontHandler(BaseHandler):
    auth = "public"

    async def authorize(self) -> None:
        if not self.methods.site.storefront:
            raise APIError(404, f"no such endpoint: {self.request.path} (the demo storefront is off: "
                                "set [site] storefront = true or run serve --demo)")

    def set_default_headers(self):
        super().set_default_headers()
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)


class StorefrontPage(StorefrontHandler):
    """The one page; its script shows the view the path or the fragment names."""

    @api_operation("The demo storefront's page (when [site] storefront is on)",
                   answers={200: ("text/html", {"type": "string"}), 404: ErrorAnswer}, tags=("storefront",))
    async def get(self, order_key: str | None = None):
        page = storefront.read(storefront.PAGE)
        token = self._demo_token()
        if token:
            page = page.replace(TOKEN_SLOT, f'<meta name="demo-token" content="{xhtml_escape(token)}">'.encode())
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        # no-store (BaseHandler's default) stays: the page may carry the demo token.
        self.finish(page)

    def _demo_token(self) -> str | None:
        token = self.settings.get("demo_token")
        if not token:
            return None
        address = getattr(getattr(self.request.connection, "context", None), "address", None)
        peer = address[0] if isinstance(address, tuple) and address else None
        forwarded = any(name in self.request.headers for name in FORWARDING_HEADERS)
        return token if may_see_demo_token(peer, self.request.host, forwarded) else None


class StorefrontAsset(StorefrontHandler):
    @api_operation("A file of the demo storefront (script, style, image)",
                   answers={200: ("*/*", {"type": "string"}), 404: ErrorAnswer}, tags=("storefront",))
    async def get(self, name: str):
        content_type = storefront.ASSETS.get(name)
        if content_type is None:
            raise APIError(404, f"no such storefront file: {name}")
        self.set_header("Content-Type", content_type)
        # Revalidated each time (Tornado answers 304 to a matching ETag): an upgrade shows at once.
        self.set_header("Cache-Control", "no-cache")
        self.finish(storefront.read(name))


default_handlers = [
    (r"/", StorefrontPage),
    (r"/orders/([^/]+)", StorefrontPage),
    (r"/storefront/([^/]+)", StorefrontAsset),
]
