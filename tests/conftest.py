import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Installed plugins must not leak into the core's tests: each test names its plugins.
os.environ.setdefault("CHECKOUT_PLUGINS", "")


@pytest.fixture(scope="session")
def embedded_uri(tmp_path_factory):
    """A real nx-27017 server on loopback for wire-level tests; stopped at the end."""
    from checkout_server.storage.embedded import EmbeddedMongo

    server = EmbeddedMongo(tmp_path_factory.mktemp("nx"))
    uri = server.start()
    yield uri
    server.stop()
