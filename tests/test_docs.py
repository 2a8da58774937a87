"""docs/plugins.md documents every hook, and its example matches the example package."""

import re
from pathlib import Path

import pytest

from checkout_server.plugin import hookspecs
from checkout_server.plugin.manager import ENTRY_POINT_GROUP

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


def _code_blocks(language: str = "python") -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PLUGINS_DOC, re.DOTALL)


def _code_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _example_files() -> list[Path]:
    return [EXAMPLE / "setup.py", EXAMPLE / "checkout_example_plugin" / "__init__.py",
            *sorted((EXAMPLE / "tests").glob("test_*.py"))]


def test_the_docs_show_the_example_code_as_it_is():
    """Every block showing the example (setup.py, the providers, the tests) is its code, line for line."""
    shown = [block for block in _code_blocks()
             if "checkout_example_plugin" in block or "class CountryRate(" in block or "class Invoice(" in block]
    assert len(shown) >= 3, "docs/plugins.md should show the example's setup.py, providers and tests"
    for needle in ("class CountryRate(", "class Invoice(", "entry_points=", "check_payment_provider("):
        assert any(needle in block for block in shown), f"docs/plugins.md does not show {needle}"
    for block in shown:
        sources = [_code_lines(path.read_text()) for path in _example_files()]
        lines = _code_lines(block)
        # All of a block's lines come from one file of the example.
        assert any(all(line in source for line in lines) for source in sources), (
            "docs/plugins.md shows lines the example does not have: "
            f"{[line for line in lines if not any(line in source for source in sources)] or block[:200]}")


def test_the_gateway_snippet_runs_as_shown_and_keeps_the_contract():
    """The "Calling a gateway" code has its imports and is a whole redirect provider."""
    from checkout_server.testing import check_payment_provider

    [block] = [block for block in _code_blocks() if "class AcmePay(" in block]
    namespace: dict = {}
    exec(compile(block, "docs/plugins.md", "exec"), namespace)  # noqa: S102 -- our own docs
    provider = check_payment_provider(namespace["AcmePay"], {"api_key": "k"})
    assert provider.flow == "redirect"


def test_the_payment_provider_table_covers_every_method():
    section = PLUGINS_DOC.split("### Payment providers", 1)[1].split("\n### ", 1)[0]
    for method in ("flow", "supports(cart)", "async start(order, urls)", "async verify_return(order, params)",
                   "async check(order)", "async parse_notification(headers, body)"):
        assert re.search(rf"^\| `{re.escape(method)}[^|]*\| (required|optional)", section, re.MULTILINE), method
    assert "PaymentStart()` without `settled=True`" in section and "HOLD" in section


def test_every_testing_helper_is_documented():
    from checkout_server import testing

    section = PLUGINS_DOC.split("## Testing your plugin", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in testing.__all__ if f"`{name}" not in section and f" {name}" not in section]
    assert not missing, f"docs/plugins.md 'Testing your plugin' does not mention {missing}"


def test_install_commands_come_in_an_order_that_works():
    """checkout-server is not on the package index: it is installed from its checkout first."""
    readme = (EXAMPLE / "README.md").read_text()
    for text in (PLUGINS_DOC, readme):
        assert "not on the package index" in text or "not published on the package index" in text
        server = text.index("pip install -e /path/to/checkout-server")
        plugin = text.index("pip install -e '.[test]'")
        assert server < plugin
    assert "pip install -e .  " not in readme  # without [test] there is no pytest


def test_the_example_pins_its_test_tools_as_the_server_does():
    ours = re.search(r'"test": \[(.*?)\]', (EXAMPLE / "setup.py").read_text(), re.DOTALL).group(1)
    servers = re.search(r'"test": \[(.*?)\]', (ROOT / "setup.py").read_text(), re.DOTALL).group(1)
    requirements = re.findall(r'"([^"]+)"', ours)
    assert {"pytest", "pytest-tornado", "mongomock-motor"} == {re.split(r"[<>=]", r)[0] for r in requirements}
    for requirement in requirements:
        assert f'"{requirement}"' in servers, f"{requirement} is pinned differently by checkout-server"


def test_the_example_carries_the_servers_warning_filters():
    def filters(text):
        block = text.split("filterwarnings =", 1)[1]
        return [line.strip() for line in block.splitlines()[1:]
                if line.startswith(" ") and line.strip() and not line.strip().startswith("#")]

    ours = filters((EXAMPLE / "pytest.ini").read_text())
    assert ours == filters((ROOT / "tox.ini").read_text())
    [shown] = _code_blocks("ini")
    assert filters(shown) == ours


def test_the_docs_show_the_config_file_and_unavailable_costs_as_they_are():
    flat = " ".join(PLUGINS_DOC.split())
    assert flat.count("config file (`--config PATH` or `CHECKOUT_CONFIG`; `config/checkout.toml` by default)") == 2
    assert '"cost": null' in PLUGINS_DOC


def test_the_first_party_settings_are_documented():
    for name in ("cash_on_delivery", "flat_rate", "free_shipping_over", "weight_table",
                 "store_pickup", "digital_delivery", "max_total", "threshold", "up_to_grams"):
        assert name in PLUGINS_DOC


def test_readme_and_plugin_docs_import_only_the_public_api():
    public = {"checkout_server.plugin", "checkout_server.testing"}
    for path in (ROOT / "README.md", ROOT / "docs" / "plugins.md"):
        text = path.read_text(encoding="utf-8")
        used = set(re.findall(r"\bcheckout_server(?:\.[a-z_]+)+", text))
        assert used <= public, f"{path.name} names internal modules: {sorted(used - public)}"


def test_the_reload_grace_period_is_the_one_documented():
    from checkout_server.app import MethodRegistry

    grace = MethodRegistry.CLOSE_GRACE_SECONDS
    assert f"called {grace} seconds after the swap" in PLUGINS_DOC
    assert f"{grace} seconds after the new ones took over" in PLUGINS_DOC


def test_the_plugin_api_documents_every_name_it_offers():
    import checkout_server.plugin as api

    for name in ("Site", "PluginDocuments", "DocumentExists", "APIError", "BaseHandler"):
        assert name in api.__all__ and f"`{name}" in PLUGINS_DOC, name
