"""GET /health: 200 once the database answers, 503 otherwise."""

from checkout_server.plugin.web import APIError, BaseHandler


class HealthHandler(BaseHandler):
    auth = "public"

    async def get(self):
        if not await self.storage.ping():
            raise APIError(503, "database unavailable")
        self.send({"status": "ok"})


default_handlers = [(r"/health", HealthHandler)]
