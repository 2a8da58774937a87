"""The config files shipped in config/ load, bind to the first-party providers, and pass
`checkout-server plugins --config`, the check an admin runs before a start or a reload."""

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from checkout_server.config import SiteConfig, load_config
from checkout_server.demo import DEMO_CONFIG_PATH
from checkout_server.methods.table import MethodTable

ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILES = [ROOT / "config" / "checkout.toml", ROOT / "config" / "production.example.toml"]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _installed_providers() -> tuple[dict, dict]:
    """Every installed plugin's providers, whatever CHECKOUT_PLUGINS says in this process."""
    from checkout_server.plugin.manager import collect_providers, make_plugin_manager

    saved = os.environ.pop("CHECKOUT_PLUGINS", None)
    try:
        return collect_providers(make_plugin_manager())
    finally:
        if saved is not None:
            os.environ["CHECKOUT_PLUGINS"] = saved


def _skip_unless_installed(config, payment: dict, shipping: dict) -> None:
    missing = sorted({m.provider for m in config.payment_methods if m.provider not in payment}
                     | {m.provider for m in config.shipping_methods if m.provider not in shipping})
    if missing:
        pytest.skip(f"providers not installed: {', '.join(missing)} (pip install -r requirements.txt)")


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CHECKOUT_PLUGINS", "CHECKOUT_CONFIG")}
    exe = Path(sys.executable).with_name("checkout-server")
    cmd = ([str(exe)] if exe.exists() else
           [sys.executable, "-c", "import sys; from checkout_server.cli import main; sys.exit(main())"])
    return subprocess.run(cmd + list(args), check=False, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_config_file_builds_a_method_table(path):
    config = load_config(path)
    assert config.payment_methods and config.shipping_methods
    payment, shipping = _installed_providers()
    _skip_unless_installed(config, payment, shipping)
    table = MethodTable.build(config, payment, shipping)
    assert set(table.payment) == {m.id for m in config.payment_methods}
    assert set(table.shipping) == {m.id for m in config.shipping_methods}


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_checkout_server_plugins_accepts_the_config_file(path):
    config = load_config(path)
    _skip_unless_installed(config, *_installed_providers())
    result = _cli("plugins", "--config", str(path))
    assert result.returncode == 0, result.stderr
    for method in (*config.payment_methods, *config.shipping_methods):
        assert f"{method.kind} {method.id}: {method.title} ({method.provider}," in result.stdout


def test_production_example_is_live():
    """No sandbox payments, https URLs: what the file's name promises."""
    config = load_config(CONFIG_FILES[1])
    assert "sandbox" not in {m.provider for m in config.payment_methods}
    assert config.site.base_url.startswith("https://") and config.site.return_url.startswith("https://")
    live = [m for m in config.payment_methods if m.provider in ("stripe", "paypal", "zarinpal")]
    assert live and not any(m.settings.get("sandbox") for m in live)


def test_default_config_offers_what_the_demo_offers():
    """README: a fresh checkout runs `serve --demo` with config/checkout.toml or the packaged
    demo config alike, so the two files keep the same methods and site."""
    default, demo = load_config(CONFIG_FILES[0]), load_config(DEMO_CONFIG_PATH)

    def methods(config):
        return [(m.kind, m.id, m.provider, m.title, m.active, m.settings)
                for m in (*config.payment_methods, *config.shipping_methods)]

    assert methods(default) == methods(demo)
    assert default.site == demo.site


def test_readme_documents_every_site_field_with_its_default():
    rows = [line for line in README.splitlines() if line.startswith("| `")]
    for field in dataclasses.fields(SiteConfig):
        default = field.default
        shown = (f'`"{default}"`' if isinstance(default, str) else
                 f"`{str(default).lower()}`" if isinstance(default, bool) else f"`{default}`")  # as TOML
        assert any(row.startswith(f"| `{field.name}` |") and row.rstrip().endswith(f"| {shown} |")
                   for row in rows), f"README: a [site] row for {field.name} ending in its default {shown}"


def test_readme_documents_every_environment_variable():
    from checkout_server.plugin.manager import PLUGINS_ENV

    read = {PLUGINS_ENV}
    for source in (ROOT / "checkout_server").rglob("*.py"):
        read |= set(re.findall(r'os\.environ\.get\("([A-Z_]+)"', source.read_text(encoding="utf-8")))
    rows = [line for line in README.splitlines() if line.startswith("| `")]
    missing = sorted(name for name in read if not any(row.startswith(f"| `{name}` |") for row in rows))
    assert not missing, f"README's environment table lacks {missing}"
