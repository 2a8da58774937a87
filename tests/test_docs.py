"""docs/plugins.md documents every hook, and its example matches the example package."""

import re
from pathlib import Path

import pytest

from checkout_server import hookspecs
from checkout_server.pluginmanager import ENTRY_POINT_GROUP

ROOT = Path(__file__).resolve().parent.parent
PLUGINS_DOC = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
EXAMPLE = ROOT / "examples" / "checkout-example-plugin"
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("register_"))


@pytest.mark.parametrize("hook", HOOKS)
def test_plugin_hooks_are_documented(hook):
    assert re.search(rf"^### {hook}\(register\)$", PLUGINS_DOC, re.MULTILINE), (
        f"docs/plugins.md needs a '### {hook}(register)' section")


def test_the_example_package_is_a_plugin():
    setup = (EXAMPLE / "setup.py").read_text()
    assert f'entry_points={{"{ENTRY_POINT_GROUP}": ["example = checkout_example_plugin"]}}' in setup


def _code_blocks():
    return re.findall(r"```python\n(.*?)```", PLUGINS_DOC, re.DOTALL)


def test_the_docs_show_the_example_code_as_it_is():
    """The provider shown in the docs is the one that is tested, line for line."""
    source = (EXAMPLE / "checkout_example_plugin" / "__init__.py").read_text()
    shown = next(block for block in _code_blocks() if "class CountryRate(" in block)
    def code_lines(text):
        return [line for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    source_lines = code_lines(source)
    missing = [line for line in code_lines(shown) if line not in source_lines]
    assert not missing, f"docs/plugins.md shows lines the example does not have: {missing}"


def test_the_first_party_settings_are_documented():
    for name in ("cash_on_delivery", "flat_rate", "free_shipping_over", "weight_table",
                 "store_pickup", "digital_delivery", "max_total", "threshold", "up_to_grams"):
        assert name in PLUGINS_DOC
