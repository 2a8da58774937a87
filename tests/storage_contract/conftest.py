"""The storage contract suite: the same behavioural tests on every backend.

The `backend` fixture is parametrised over
- `mongomock`: mongomock-motor, in memory (what the unit tests use);
- `nx`: a real nx-27017 server on loopback, started once per test session (`embedded_uri`),
  reached over the wire by PyMongo's async driver;
- `mongodb`: the server at `MONGODB_URI`, when that variable is set (skipped otherwise).

Each test gets its own fresh database. Use it like this, in a file named
`tests/storage_contract/test_contract_<area>.py`:

    import pytest

    @pytest.mark.gen_test
    async def test_something(backend):
        storage = await backend.storage()          # indexes created, empty collections
        other = await backend.another_client()     # same database, its own client (wire backends)
        ...

`backend.name` is "mongomock", "nx" or "mongodb"; `backend.wire` is False for mongomock.
Every client the fixture hands out is closed after the test.
"""

from __future__ import annotations

import os
import secrets

import pytest

from checkout_server.storage import Storage

BACKENDS = ("mongomock", "nx", "mongodb")


class Backend:
    def __init__(self, name: str, uri: str | None):
        self.name = name
        self.uri = uri
        self.wire = uri is not None
        self.db_name = f"contract_{secrets.token_hex(6)}"
        self._mock_client = None
        self._opened: list[Storage] = []

    def __repr__(self) -> str:
        return f"<Backend {self.name}>"

    def _open(self) -> Storage:
        if self.wire:
            storage = Storage.connect(self.uri, db_name=None)
            storage = Storage(storage.client[self.db_name], storage.client)
        else:
            from mongomock_motor import AsyncMongoMockClient

            if self._mock_client is None:
                self._mock_client = AsyncMongoMockClient()
            # mongomock keeps data per client: every "client" here shares the one store.
            storage = Storage(self._mock_client[self.db_name], None)
        self._opened.append(storage)
        return storage

    async def storage(self) -> Storage:
        """A Storage on this test's database, with its indexes created."""
        storage = self._open()
        await storage.create_indexes()
        return storage

    async def another_client(self) -> Storage:
        """The same database through a separate client (a separate connection pool)."""
        return self._open()

    async def close(self) -> None:
        for storage in self._opened:
            await storage.close()


@pytest.fixture(params=BACKENDS)
def backend(request, io_loop):
    name = request.param
    if name == "mongomock":
        uri = None
    elif name == "nx":
        uri = request.getfixturevalue("embedded_uri")
    else:
        uri = os.environ.get("MONGODB_URI")
        if not uri:
            pytest.skip("MONGODB_URI is not set: no real MongoDB to run the contract against")
    b = Backend(name, uri)
    yield b
    io_loop.run_sync(b.close)  # on the test's loop, which the clients ran on
