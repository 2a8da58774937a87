"""/health and Storage.ping against a database that accepts connections and never answers."""

import asyncio
import json
import socket

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from checkout_server.app import Application
from checkout_server.config import parse_config
from checkout_server.plugin.manager import make_plugin_manager
from checkout_server.storage import Storage


@pytest.fixture
def hung_database():
    """A loopback port that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"mongodb://127.0.0.1:{listener.getsockname()[1]}/?directConnection=true"
    listener.close()


@pytest.mark.gen_test(timeout=30)
async def test_ping_answers_false_within_its_bound_when_the_database_hangs(hung_database):
    # The driver alone would wait 30 s to give up on server selection; ping must not.
    storage = Storage.connect(hung_database, "x", serverSelectionTimeoutMS=30000)
    try:
        assert await asyncio.wait_for(storage.ping(timeout=0.5), 5) is False
    finally:
        await storage.close()


@pytest.mark.gen_test(timeout=30)
async def test_health_is_a_json_503_when_the_database_hangs(hung_database):
    storage = Storage.connect(hung_database, "x", serverSelectionTimeoutMS=30000)
    # No start-up (it would need the database): /health is what a load balancer asks first.
    app = Application(storage, parse_config({}, None), plugin_manager=make_plugin_manager(False))
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    client = AsyncHTTPClient(force_instance=True)
    try:
        r = await client.fetch(f"http://127.0.0.1:{port}/health", raise_error=False, request_timeout=10)
        assert r.code == 503 and json.loads(r.body) == {"error": "database unavailable"}
    finally:
        client.close()
        server.stop()
        await storage.close()
