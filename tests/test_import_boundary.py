"""Plugins (first-party ones and the example) use only the public API of the core.

Every module of every plugin's package and tests is parsed: from `checkout_server` it may
import `checkout_server.plugin` (the plugin API) and `checkout_server.testing` (the test
kit), and nothing else; not even their submodules, which may change without notice.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = {"checkout_server.plugin", "checkout_server.testing"}
PLUGIN_DIRS = sorted([*ROOT.glob("plugins/*/"), ROOT / "examples" / "checkout-example-plugin"])


def imports_of_the_core(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of checkout_server in the file, however it is spelled."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            if node.module == "checkout_server":  # from checkout_server import payments
                found += [(node.lineno, f"checkout_server.{alias.name}") for alias in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            found.append((node.lineno, str(node.args[0].value)))
    return [(line, name) for line, name in found
            if name == "checkout_server" or name.startswith("checkout_server.")]


def test_every_plugin_is_checked():
    names = {path.name for path in PLUGIN_DIRS}
    assert {"checkout-cod", "checkout-sandbox", "checkout-paypal", "checkout-stripe", "checkout-zarinpal",
            "checkout-shipping-basic", "checkout-example-plugin"} <= names
    for path in PLUGIN_DIRS:
        assert list(path.rglob("tests/*.py")) and [p for p in path.rglob("*.py") if "tests" not in p.parts]


@pytest.mark.parametrize("plugin", PLUGIN_DIRS, ids=lambda path: path.name)
def test_a_plugin_imports_only_the_plugin_api_and_the_test_kit(plugin):
    wrong = [f"{path.relative_to(ROOT)}:{line}: {name}"
             for path in sorted(plugin.rglob("*.py")) if ".egg-info" not in str(path)
             for line, name in imports_of_the_core(path) if name not in PUBLIC]
    assert not wrong, ("plugins import only checkout_server.plugin and checkout_server.testing:\n"
                       + "\n".join(wrong))


def test_the_check_sees_every_way_of_importing(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import checkout_server.storage\n"
                      "from checkout_server.payments.sweeper import sweep\n"
                      "from checkout_server import config, plugin\n"
                      "from checkout_server.plugin.web import BaseHandler\n"
                      "from checkout_server.plugin import hookimpl\n"
                      "def f():\n"
                      "    import importlib\n"
                      "    importlib.import_module('checkout_server.clock')\n")
    names = [name for _, name in imports_of_the_core(sample)]
    assert [n for n in names if n not in PUBLIC] == [
        "checkout_server.storage", "checkout_server.payments.sweeper", "checkout_server",
        "checkout_server.config", "checkout_server.plugin.web", "checkout_server.clock"]
