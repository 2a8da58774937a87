"""The plugin manager: entry-point discovery, CHECKOUT_PLUGINS, fail-fast, reporting."""

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from checkout_server import cli
from checkout_server.plugin import manager as pluginmanager
from checkout_server.plugin.hookspecs import hookimpl
from checkout_server.plugin.manager import (
    PluginError,
    collect_providers,
    get_plugins,
    make_plugin_manager,
)
from checkout_server.plugin.providers import PaymentProvider, ShippingProvider
from checkout_server.testing import TestShop

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "checkout-example-plugin"
FIRST_PARTY = "checkout-cod,checkout-shipping-basic"


def installed(name):
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_first_party = pytest.mark.skipif(
    not (installed("checkout-cod") and installed("checkout-shipping-basic")),
    reason="first-party plugins not installed (pip install -r requirements.txt)")


def write_dist(site: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]):
    """An installed distribution, as pip leaves it: modules plus a dist-info directory."""
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[checkout_server]\n{lines}")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path to install distributions into; forgotten afterwards."""
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    before = set(sys.modules)
    yield path
    for name in set(sys.modules) - before:
        if getattr(sys.modules[name], "__file__", "") and str(tmp_path) in sys.modules[name].__file__:
            del sys.modules[name]


# -- the proof that third-party packages work: the example, installed from a copy

@pytest.fixture
def example_installed(tmp_path, monkeypatch):
    """examples/checkout-example-plugin copied elsewhere and installed from its setup.py."""
    copy = tmp_path / "checkout-example-plugin"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    # egg_info writes the metadata pip would (entry_points.txt from setup.py), no network.
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info"], cwd=copy, check=True,
                   capture_output=True)
    monkeypatch.syspath_prepend(str(copy))
    yield copy
    sys.modules.pop("checkout_example_plugin", None)


@pytest.mark.gen_test
async def test_a_separately_installed_plugin_is_discovered_and_usable(example_installed, monkeypatch):
    monkeypatch.setenv("CHECKOUT_PLUGINS", "example")
    [plugin] = get_plugins(make_plugin_manager())
    assert plugin["name"] == "example"
    assert plugin["distribution"] == "checkout-example-plugin" and plugin["version"] == "0.1.0"
    assert plugin["shipping_providers"] == ["country_rate"]
    assert plugin["payment_providers"] == ["invoice"]

    config = {"shipping_methods": [{"id": 4, "provider": "country_rate", "title": "Tracked",
                                    "settings": {"rates": {"GB": 450}}}]}
    async with TestShop(config=config, load_entry_points=True) as shop:
        product = await shop.product()
        customer = await shop.customer(cart={product["_id"]: 1})
        r = await customer.request("GET", f"/api/shop/checkout/methods?address={customer.address_id}")
        assert r.status == 200
        assert r.body["shipping_methods"] == [{"id": 4, "title": "Tracked", "cost": 450}]


def test_the_example_plugin_passes_its_own_tests_when_copied(example_installed):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        check=False, cwd=example_installed, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(example_installed)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "11 passed" in result.stdout
    assert "warning" not in result.stdout  # its pytest.ini filters pytest-tornado's noise


# -- CHECKOUT_PLUGINS

DEMO_PLUGIN = """
from checkout_server.plugin.hookspecs import hookimpl
from checkout_server.plugin.providers import PaymentProvider

class Voucher(PaymentProvider):
    name = "voucher"
    flow = "direct"

@hookimpl
def register_payment_providers(register):
    register(Voucher)
"""


def test_checkout_plugins_limits_loading_by_entry_point_or_distribution_name(site, monkeypatch):
    write_dist(site, "shop-voucher", {"voucher": "shop_voucher"}, {"shop_voucher": DEMO_PLUGIN})
    write_dist(site, "shop-other", {"other": "shop_other"}, {"shop_other": DEMO_PLUGIN.replace(
        '"voucher"', '"other"')})
    for allowed in ("voucher", "shop-voucher", "Shop_Voucher", " voucher ,"):
        monkeypatch.setenv("CHECKOUT_PLUGINS", allowed)
        pm = make_plugin_manager()
        assert [p["name"] for p in get_plugins(pm)] == ["voucher"]
        assert list(collect_providers(pm)[0]) == ["voucher"]
    monkeypatch.setenv("CHECKOUT_PLUGINS", "voucher,other")
    assert [p["name"] for p in get_plugins(make_plugin_manager())] == ["other", "voucher"]
    monkeypatch.setenv("CHECKOUT_PLUGINS", "")
    assert get_plugins(make_plugin_manager()) == []


def test_a_module_name_is_not_a_plugin_name(site, monkeypatch, caplog):
    # Documented: entry-point and distribution names only; a module name is not looked at.
    write_dist(site, "shop-voucher", {"voucher": "voucher_impl"}, {"voucher_impl": DEMO_PLUGIN})
    monkeypatch.setenv("CHECKOUT_PLUGINS", "voucher_impl")
    assert get_plugins(make_plugin_manager()) == []
    assert "voucher-impl" in caplog.text and "no installed plugin" in caplog.text


def test_unset_checkout_plugins_loads_every_installed_plugin(site, monkeypatch):
    write_dist(site, "shop-voucher", {"voucher": "shop_voucher"}, {"shop_voucher": DEMO_PLUGIN})
    monkeypatch.delenv("CHECKOUT_PLUGINS", raising=False)
    names = [p["name"] for p in get_plugins(make_plugin_manager())]
    assert "voucher" in names


def test_a_name_matching_no_plugin_is_logged(site, monkeypatch, caplog):
    monkeypatch.setenv("CHECKOUT_PLUGINS", "no-such-plugin")
    make_plugin_manager()
    assert "no-such-plugin" in caplog.text


# -- failing fast

def test_a_misspelled_hook_in_an_installed_plugin_stops_start_up(site, monkeypatch):
    write_dist(site, "shop-typo", {"typo": "shop_typo"}, {"shop_typo": DEMO_PLUGIN.replace(
        "def register_payment_providers", "def register_payment_provider")})
    monkeypatch.setenv("CHECKOUT_PLUGINS", "typo")
    with pytest.raises(PluginError, match="plugin 'typo': unknown hook 'register_payment_provider' — "
                                          "did you mean 'register_payment_providers'?"):
        make_plugin_manager()


@pytest.mark.gen_test
async def test_a_misspelled_hook_in_a_plugin_under_test_fails_the_test_shop():
    class Typo:
        @hookimpl
        def register_shipping_provider(self, register):
            pass

    with pytest.raises(PluginError, match="plugin 'Typo': unknown hook 'register_shipping_provider' — "
                                          "did you mean 'register_shipping_providers'?"):
        async with TestShop(plugins=[Typo()]):
            pass


def test_a_hook_name_like_no_other_lists_the_hooks():
    class Odd:
        @hookimpl
        def on_checkout(self):
            pass

    pm = make_plugin_manager(load_entry_points=False)
    pm.register(Odd(), name="odd")
    with pytest.raises(PluginError, match="plugin 'odd': unknown hook 'on_checkout' — the hooks are "
                                          "register_fake_gateways, register_payment_providers"):
        pluginmanager.check_hooks(pm)


def test_a_plugin_that_fails_to_import_is_named(site, monkeypatch):
    write_dist(site, "shop-broken", {"broken": "shop_broken"}, {"shop_broken": "raise ImportError('no gateway sdk')\n"})
    monkeypatch.setenv("CHECKOUT_PLUGINS", "broken")
    with pytest.raises(PluginError, match="'broken'.*shop-broken.*no gateway sdk"):
        make_plugin_manager()


def test_the_cli_reports_a_broken_plugin_and_exits_2(site, monkeypatch, capsys):
    write_dist(site, "shop-broken", {"broken": "shop_broken"}, {"shop_broken": "1/0\n"})
    monkeypatch.setenv("CHECKOUT_PLUGINS", "broken")
    monkeypatch.setattr(pluginmanager, "pm", None)
    assert cli.main(["plugins"]) == 2
    assert "plugin error" in capsys.readouterr().err


class Nameless(PaymentProvider):
    flow = "direct"


class NoFlow(PaymentProvider):
    name = "no_flow"


class Ship(ShippingProvider):
    name = "ship"


class OtherShip(ShippingProvider):
    name = "ship"


@pytest.mark.parametrize("hook, registered, message", [
    ("register_payment_providers", [Nameless], "has no name"),
    ("register_payment_providers", [NoFlow], "flow"),
    ("register_payment_providers", [Ship], "not a PaymentProvider"),
    ("register_shipping_providers", [object], "not a ShippingProvider"),
    ("register_shipping_providers", [Ship, OtherShip], "two shipping providers are named 'ship'"),
])
def test_invalid_registrations_stop_start_up(hook, registered, message):
    plugin = type("BadPlugin", (), {hook: hookimpl(lambda self, register: [register(c) for c in registered])})()
    pm = make_plugin_manager(load_entry_points=False)
    pm.register(plugin)
    with pytest.raises(PluginError, match=message):
        collect_providers(pm)


# -- reporting

@needs_first_party
def test_cli_plugins_lists_name_version_and_providers(monkeypatch, capsys):
    monkeypatch.setenv("CHECKOUT_PLUGINS", FIRST_PARTY)
    monkeypatch.setattr(pluginmanager, "pm", None)
    assert cli.main(["plugins", "--json"]) == 0
    plugins = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert set(plugins) == {"cash_on_delivery", "shipping_basic"}
    assert plugins["cash_on_delivery"]["distribution"] == "checkout-cod"
    assert plugins["cash_on_delivery"]["version"] == "0.1.0"
    assert plugins["cash_on_delivery"]["payment_providers"] == ["cash_on_delivery"]
    assert plugins["shipping_basic"]["shipping_providers"] == [
        "digital_delivery", "flat_rate", "free_shipping_over", "store_pickup", "weight_table"]

    monkeypatch.setattr(pluginmanager, "pm", None)
    assert cli.main(["plugins"]) == 0
    text = capsys.readouterr().out
    assert "cash_on_delivery (checkout-cod 0.1.0)" in text and "  shipping: weight_table" in text


def test_cli_plugins_says_when_there_are_none(monkeypatch, capsys):
    monkeypatch.delenv("CHECKOUT_PLUGINS", raising=False)
    monkeypatch.setattr(pluginmanager, "pm", make_plugin_manager(load_entry_points=False))
    assert cli.main(["plugins"]) == 0
    assert capsys.readouterr().out == "no plugins installed\n"


def test_cli_plugins_says_when_checkout_plugins_left_them_all_out(monkeypatch, capsys):
    for value in ("", "no-such-plugin"):
        monkeypatch.setenv("CHECKOUT_PLUGINS", value)
        monkeypatch.setattr(pluginmanager, "pm", None)
        assert cli.main(["plugins"]) == 0
        assert capsys.readouterr().out == f'no plugins loaded (CHECKOUT_PLUGINS="{value}")\n'


@needs_first_party
def test_an_unknown_provider_says_checkout_plugins_limits_what_loads(tmp_path, monkeypatch, capsys):
    config = tmp_path / "shop.toml"
    config.write_text('[[shipping_methods]]\nid = 1\nprovider = "flat_rate"\nsettings = { cost = 1 }\n')
    monkeypatch.setenv("CHECKOUT_PLUGINS", "checkout-cod")
    monkeypatch.setattr(pluginmanager, "pm", None)
    assert cli.main(["plugins", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert ("shipping method 1: provider: unknown shipping provider 'flat_rate' (known: none loaded) "
            '— CHECKOUT_PLUGINS="checkout-cod" limits which plugins load') in err


@needs_first_party
@pytest.mark.gen_test
async def test_admin_plugins_lists_plugins_and_configured_methods(monkeypatch):
    monkeypatch.setenv("CHECKOUT_PLUGINS", FIRST_PARTY)
    config = {
        "payment_methods": [{"id": 1, "provider": "cash_on_delivery", "title": "Pay on delivery"}],
        "shipping_methods": [
            {"id": 1, "provider": "flat_rate", "title": "Standard", "settings": {"cost": 490}},
            {"id": 3, "provider": "store_pickup", "title": "Pick up", "active": False},
        ],
    }
    async with TestShop(config=config, load_entry_points=True) as shop:
        r = await shop.request("GET", "/api/admin/plugins")
        assert r.status == 401 and "error" in r.body
        customer = await shop.customer()
        r = await customer.request("GET", "/api/admin/plugins")
        assert r.status == 403
        r = await shop.admin("GET", "/api/admin/plugins")
        assert r.status == 200
        plugins = {p["name"]: p for p in r.body["plugins"]}
        assert plugins["cash_on_delivery"]["version"] == "0.1.0"
        assert "flat_rate" in plugins["shipping_basic"]["shipping_providers"]
        assert r.body["methods"] == [
            {"id": 1, "kind": "payment", "provider": "cash_on_delivery", "title": "Pay on delivery",
             "active": True, "flow": "direct"},
            {"id": 1, "kind": "shipping", "provider": "flat_rate", "title": "Standard",
             "active": True},
            {"id": 3, "kind": "shipping", "provider": "store_pickup", "title": "Pick up",
             "active": False},
        ]


@needs_first_party
def test_cli_plugins_checks_a_config_file_before_a_reload(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHECKOUT_PLUGINS", FIRST_PARTY)
    good = tmp_path / "good.toml"
    good.write_text('[[payment_methods]]\nid = 1\nprovider = "cash_on_delivery"\ntitle = "COD"\n'
                    '[[shipping_methods]]\nid = 2\nprovider = "store_pickup"\nactive = false\n')
    monkeypatch.setattr(pluginmanager, "pm", None)
    assert cli.main(["plugins", "--config", str(good)]) == 0
    out = capsys.readouterr().out
    assert "payment 1: COD (cash_on_delivery, active)" in out
    assert "shipping 2: store_pickup (store_pickup, inactive)" in out

    bad = tmp_path / "bad.toml"
    bad.write_text('[[shipping_methods]]\nid = 2\nprovider = "flat_rate"\nsettings = { cost = -1 }\n')
    assert cli.main(["plugins", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "shipping method 2" in err and "settings.cost" in err


# -- plugin routes that could end up public: plugin errors before anything starts

BAD_ROUTES = {
    "plain": ("import tornado.web\n"
              "class Export(tornado.web.RequestHandler):\n"
              "    auth = 'customer'\n"
              "    def get(self):\n"
              "        self.write({})\n"),
    "prepare": ("from checkout_server.plugin import BaseHandler\n"
                "class Export(BaseHandler):\n"
                "    auth = 'customer'\n"
                "    async def prepare(self):\n"
                "        pass\n"),
}
ROUTES_HOOK = ("from checkout_server.plugin import hookimpl\n"
               "@hookimpl\n"
               "def register_routes(register):\n"
               "    register(r'/acme/export', Export)\n")


@pytest.fixture
def no_database(monkeypatch):
    """Fails the test if `serve` gets as far as starting a database."""
    from checkout_server.storage import embedded

    def refuse(self):
        raise AssertionError("the database was started")

    monkeypatch.setattr(embedded.EmbeddedMongo, "start", refuse)
    monkeypatch.delenv("MONGODB_URI", raising=False)


@pytest.mark.parametrize("kind", BAD_ROUTES)
def test_a_plugin_route_that_would_skip_the_token_check_stops_serve_and_plugins_with_exit_2(
        kind, site, tmp_path, monkeypatch, capsys, no_database):
    write_dist(site, "acme-export", {"acme_export": "acme_export"},
               {"acme_export": BAD_ROUTES[kind] + ROUTES_HOOK})
    monkeypatch.setenv("CHECKOUT_PLUGINS", "acme-export")
    config = tmp_path / "shop.toml"
    config.write_text("[site]\ncurrency = 'EUR'\n")
    for argv in (["serve", "--config", str(config), "--port", "0"], ["plugins", "--config", str(config)]):
        monkeypatch.setattr(pluginmanager, "pm", None)
        assert cli.main(argv) == 2, argv
        captured = capsys.readouterr()
        [line] = captured.err.splitlines()
        assert line.startswith("checkout-server: plugin error: plugin 'acme_export': route '/acme/export': ")
        assert ("overrides prepare()" if kind == "prepare" else "does not subclass") in line
        assert "Traceback" not in captured.err


@needs_first_party
def test_cli_plugins_json_shows_plugins_alone_or_with_the_configured_methods(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHECKOUT_PLUGINS", FIRST_PARTY)
    monkeypatch.setattr(pluginmanager, "pm", None)
    assert cli.main(["plugins", "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert isinstance(alone, list) and {p["name"] for p in alone} == {"cash_on_delivery", "shipping_basic"}
    assert set(alone[0]) == {"name", "distribution", "version", "hooks", "payment_providers",
                             "shipping_providers"}
    config = tmp_path / "shop.toml"
    config.write_text('[[payment_methods]]\nid = 1\nprovider = "cash_on_delivery"\ntitle = "COD"\n'
                      '[[shipping_methods]]\nid = 2\nprovider = "store_pickup"\nactive = false\n')
    assert cli.main(["plugins", "--json", "--config", str(config)]) == 0
    both = json.loads(capsys.readouterr().out)
    assert both["plugins"] == alone
    assert both["methods"] == [
        {"id": 1, "kind": "payment", "provider": "cash_on_delivery", "title": "COD", "active": True,
         "flow": "direct"},
        {"id": 2, "kind": "shipping", "provider": "store_pickup", "title": "store_pickup", "active": False},
    ]
