"""Config errors stop start-up with a message naming the file, the method and the field."""

import os
import subprocess
import sys

import pytest
from marshmallow import Schema, fields, validate

from checkout_server.config import ConfigError, load_config, parse_config
from checkout_server.methods.table import MethodTable
from checkout_server.plugin.providers import PaymentProvider, ShippingProvider, Support


class Rate(Schema):
    up_to = fields.Integer(required=True, strict=True)
    cost = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))


class FakePaySettings(Schema):
    limit = fields.Integer(strict=True, validate=validate.Range(min=1), load_default=None)


class FakePay(PaymentProvider):
    name = "test_pay"
    flow = "direct"
    settings_schema = FakePaySettings

    def supports(self, cart):
        return Support.yes()


class FakeShipSettings(Schema):
    rates = fields.List(fields.Nested(Rate), required=True)


class FakeShip(ShippingProvider):
    name = "test_ship"
    settings_schema = FakeShipSettings

    def quote(self, cart, address):
        return 0


PAYMENT = {"test_pay": FakePay}
SHIPPING = {"test_ship": FakeShip}
GOOD = """
[site]
currency = "eur"
hold_minutes = 15

[[payment_methods]]
id = 1
provider = "test_pay"
title = "Pay"
[payment_methods.settings]
limit = 5_000

[[shipping_methods]]
id = 1
provider = "test_ship"
title = "Ship"
active = false
settings = { rates = [{ up_to = 500, cost = 300 }] }
"""


def build(text, tmp_path, name="checkout.toml"):
    path = tmp_path / name
    path.write_text(text)
    return MethodTable.build(load_config(path), PAYMENT, SHIPPING), str(path)


def error_of(text, tmp_path):
    with pytest.raises(ConfigError) as error:
        build(text, tmp_path)
    return str(error.value)


def test_a_good_file_builds_a_table(tmp_path):
    table, path = build(GOOD, tmp_path)
    assert table.config.path == path and table.site.currency == "EUR" and table.site.hold_minutes == 15
    assert table.payment[1].provider.settings == {"limit": 5000}
    assert table.active_payment(1).title == "Pay"
    assert table.shipping[1].active is False and table.active_shipping(1) is None


@pytest.mark.parametrize("method, expected", [
    ('id = 3\nprovider = "bitcoin"', ["payment method 3", "provider", "'bitcoin'", "test_pay"]),
    ('id = 3\nprovider = "test_ship"', ["payment method 3", "provider", "unknown payment provider"]),
    ('id = "3"\nprovider = "test_pay"', ["payment_methods[0]", "id", "positive integer"]),
    ('id = 0\nprovider = "test_pay"', ["payment_methods[0]", "id"]),
    ('id = true\nprovider = "test_pay"', ["payment_methods[0]", "id"]),
    ('id = 3\nprovider = "test_pay"\nactive = "yes"', ["payment method 3", "active"]),
    ('id = 3\nprovider = "test_pay"\ntitle = ""', ["payment method 3", "title"]),
    ('id = 3\nprovider = 7', ["payment method 3", "provider"]),
    ('id = 3\nprovider = "test_pay"\nsettings = 5', ["payment method 3", "settings"]),
    ('id = 3\nprovider = "test_pay"\nprice = 5', ["payment method 3", "unknown field", "price"]),
    ('id = 3\nprovider = "test_pay"\nsettings = { limit = "lots" }',
     ["payment method 3", "settings.limit", "integer"]),
    ('id = 3\nprovider = "test_pay"\nsettings = { limit = 0 }', ["payment method 3", "settings.limit"]),
    ('id = 3\nprovider = "test_pay"\nsettings = { limti = 5 }', ["payment method 3", "settings.limti"]),
])
def test_a_bad_payment_method_is_named_with_its_field(tmp_path, method, expected):
    message = error_of(f"[[payment_methods]]\n{method}\n", tmp_path)
    assert message.startswith(str(tmp_path / "checkout.toml"))
    for part in expected:
        assert part in message


def test_a_duplicate_id_is_named(tmp_path):
    text = GOOD + '\n[[shipping_methods]]\nid = 1\nprovider = "test_ship"\nsettings = { rates = [] }\n'
    message = error_of(text, tmp_path)
    assert "shipping method 1: id: [[shipping_methods]] id 1 appears twice" in message


def test_the_same_id_in_payment_and_shipping_is_fine(tmp_path):
    table, _ = build(GOOD, tmp_path)
    assert set(table.payment) == set(table.shipping) == {1}


def test_a_nested_settings_error_names_the_exact_field(tmp_path):
    text = '[[shipping_methods]]\nid = 4\nprovider = "test_ship"\nsettings = { rates = [{ up_to = 5 }] }\n'
    message = error_of(text, tmp_path)
    assert "shipping method 4" in message and "settings.rates.0.cost" in message


@pytest.mark.parametrize("text, expected", [
    ("[site]\ncurrency = 'euro'\n", "[site] currency"),
    ("[site]\nhold_minutes = 0\n", "[site] hold_minutes"),
    ("[site]\nbase_url = 'ftp://x'\n", "[site] base_url"),
    ("[site]\ncolour = 'red'\n", "colour"),
    ("[shop]\n", "unknown section"),
    ("payment_methods = 5\n", "payment_methods"),
    ("[[payment_methods]\nid = 1\n", "not valid TOML"),
])
def test_bad_site_settings_and_syntax_name_the_file(tmp_path, text, expected):
    message = error_of(text, tmp_path)
    assert str(tmp_path / "checkout.toml") in message and expected in message


def test_a_missing_file_named_explicitly_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_an_empty_config_has_no_methods():
    config = parse_config({}, None)
    assert config.payment_methods == () and config.site.currency == "EUR"


def test_an_unknown_provider_names_checkout_plugins_when_it_is_set(tmp_path, monkeypatch):
    text = '[[payment_methods]]\nid = 3\nprovider = "bitcoin"\n'
    monkeypatch.delenv("CHECKOUT_PLUGINS", raising=False)
    assert "CHECKOUT_PLUGINS" not in error_of(text, tmp_path)
    monkeypatch.setenv("CHECKOUT_PLUGINS", "acme")
    assert error_of(text, tmp_path).endswith(
        "unknown payment provider 'bitcoin' (known: test_pay) — CHECKOUT_PLUGINS=\"acme\" limits which plugins load")


def _serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("CHECKOUT_CONFIG", "MONGODB_URI")}
    # The app is built before any database round trip: a closed port is never dialled.
    environment.update(MONGODB_URI="mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=100", **(env or {}))
    program = "import sys; from checkout_server.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", program, "serve", "--port", "0", *args], check=False,
                          env=environment, capture_output=True, text=True, timeout=60)


def test_serve_refuses_to_start_on_a_bad_method(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[payment_methods]]\nid = 9\nprovider = "nobody_installed_this"\n')
    done = _serve("--config", str(path))
    assert done.returncode == 2
    err = done.stderr
    assert "config error" in err and str(path) in err and "payment method 9" in err
    assert "provider" in err
    # The file is announced ("config X: N payment and M shipping methods") only once it builds.
    assert "payment and" not in err and "Traceback" not in err


@pytest.mark.parametrize(("named_by", "text"), [("--config", ""), ("CHECKOUT_CONFIG", "\n# nothing yet\n")])
def test_serve_refuses_an_explicitly_named_empty_config(tmp_path, text, named_by):
    """A truncated file (a deploy caught half-way) must not start a shop without methods."""
    path = tmp_path / "checkout.toml"
    path.write_text(text)
    done = (_serve("--config", str(path)) if named_by == "--config"
            else _serve(env={"CHECKOUT_CONFIG": str(path)}))
    assert done.returncode == 2
    assert f"checkout-server: config error: {path}: the file is empty" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("raw, message", [
    ({"site": 5}, "[site] must be a table"),
    ({"site": {"currency": 978}}, "[site] currency: must be a 3-letter ISO 4217 code"),
    ({"site": {"return_url": 7}}, "[site] return_url: must be an http(s) URL"),
    ({"site": {"hold_minutes": 1.5}}, "[site] hold_minutes: must be a positive integer"),
    ({"shop": {}, "extra": 1}, "unknown section(s): extra, shop"),
    ({"payment_methods": [5]}, "payment_methods[0]: must be a table"),
    ({"payment_methods": [{"provider": "x"}]}, "payment_methods[0]: id: must be a positive integer"),
    ({"payment_methods": [{"id": 1, "provider": "x", "title": 7}]},
     "payment method 1: title: must be a non-empty string"),
    ({"shipping_methods": [{"id": 2}]}, "shipping method 2: provider: must be a provider name"),
    ({"shipping_methods": [{"id": 2, "provider": "x", "settings": [1]}]}, "shipping method 2: settings: must be a table"),
    # The first problem in reading order, one at a time: the duplicate before the second's own field.
    ({"payment_methods": [{"id": 1, "provider": "x"}, {"id": 1, "provider": "y", "active": 1}]},
     "payment method 1: id: [[payment_methods]] id 1 appears twice (ids are unique per kind)"),
])
def test_every_schema_problem_is_one_line_naming_file_section_and_field(raw, message):
    with pytest.raises(ConfigError) as error:
        parse_config(raw, "shop.toml")
    assert str(error.value) == f"shop.toml: {message}"
