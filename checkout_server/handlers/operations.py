"""For operators and integrators: GET /metrics (Prometheus) and GET /api/openapi.json."""

from __future__ import annotations

import hmac
import ipaddress

from checkout_server.observability import metrics
from checkout_server.plugin.api_docs import api_operation
from checkout_server.plugin.web import APIError, BaseHandler


def is_loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return False


class MetricsHandler(BaseHandler):
    """Prometheus's text exposition; who may read it is the config's `[metrics] access`."""

    auth = "public"  # authorize() applies [metrics] access

    async def authorize(self) -> None:
        access = self.methods.config.metrics.access
        if access == "off":
            raise APIError(404, f"no such endpoint: {self.request.path}")
        if access == "open" or (access == "loopback" and is_loopback(self.request.remote_ip)):
            return
        expected = self.settings.get("admin_token")
        token = self._token()
        if not (expected and token and hmac.compare_digest(token.encode(), expected.encode())):
            raise APIError(401, "the metrics need the admin token: send 'Authorization: Token <admin token>'",
                           headers={"WWW-Authenticate": "Token"})

    @api_operation("Prometheus metrics (text exposition format)",
                   description="Who may read them is the config's `[metrics] access`: by default clients "
                               "on loopback, others with the admin token.",
                   answers={200: ("text/plain", {"type": "string"})})
    async def get(self):
        self.set_header("Content-Type", metrics.CONTENT_TYPE)
        self.finish(metrics.exposition())


class OpenAPIHandler(BaseHandler):
    """The OpenAPI 3.1 document of this server's routes, plugin routes that declare theirs included."""

    auth = "public"

    @api_operation("This OpenAPI document", answers={200: ("application/json", {"type": "object"})})
    async def get(self):
        self.send(self.application.openapi_document())


default_handlers = [
    (r"/metrics", MetricsHandler),
    (r"/api/openapi.json", OpenAPIHandler),
]
