"""GET /health: 200 once the database answers, 503 otherwise."""

from checkout_server.plugin.api_docs import api_operation
from checkout_server.plugin.web import APIError, BaseHandler
from checkout_server.response_schemas import HealthAnswer


class HealthHandler(BaseHandler):
    auth = "public"

    @api_operation("Whether the service and its database answer", answers={200: HealthAnswer})
    async def get(self):
        if not await self.storage.ping():
            raise APIError(503, "database unavailable")
        self.send({"status": "ok"})


default_handlers = [(r"/health", HealthHandler)]
