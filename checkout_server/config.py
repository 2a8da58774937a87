"""The config file (TOML): site settings and the payment and shipping methods.

The file's schema is marshmallow's (as providers' settings are); every error is one line
naming the file, the method and the field, so an admin can fix it at once.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from checkout_server.schemas import StrictBoolean, StrictInteger

DEFAULT_CONFIG = "config/checkout.toml"


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class SiteConfig:
    currency: str = "EUR"
    # Where the shopper lands after paying: {order_key} and {result} are filled in.
    return_url: str = "http://localhost:8888/orders/{order_key}?payment={result}"
    # This service's public address, for the URLs handed to gateways.
    base_url: str = "http://localhost:8888"
    hold_minutes: int = 30
    # Limits per customer (docs/checkout.md): orders on HOLD (waiting for payment), the units
    # they hold, a new order's included; stored Idempotency-Keys (each kept 24 hours).
    unpaid_orders_per_customer: int = 5
    unpaid_units_per_customer: int = 100
    idempotency_keys_per_customer: int = 1000
    # Serve the demo storefront at / (and its order page at /orders/{key}); --demo turns it on.
    storefront: bool = False


LIMITS = ("unpaid_orders_per_customer", "unpaid_units_per_customer", "idempotency_keys_per_customer")


METRICS_ACCESS = ("loopback", "open", "admin", "off")


@dataclass(frozen=True)
class MetricsConfig:
    # Who may read GET /metrics: "loopback" (clients on this machine; others need the admin
    # token), "open" (anyone), "admin" (the admin token only), "off" (404).
    access: str = "loopback"


@dataclass(frozen=True)
class MethodConfig:
    kind: str  # "payment" or "shipping"
    id: int
    provider: str
    title: str
    active: bool
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    path: str | None
    site: SiteConfig
    payment_methods: tuple[MethodConfig, ...]
    shipping_methods: tuple[MethodConfig, ...]
    metrics: MetricsConfig = MetricsConfig()


def config_path(cli_value: str | None = None) -> str:
    return cli_value or os.environ.get("CHECKOUT_CONFIG") or DEFAULT_CONFIG


def load_config(path: str | os.PathLike | None) -> Config:
    """Read and check a config file; a missing default file means an empty config."""
    if path is None:
        return parse_config({}, None)
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return parse_config(raw, str(p))


class _Table(Schema):
    """A TOML table: unknown keys and anything but a table are errors."""

    class Meta:
        unknown = RAISE

    error_messages: ClassVar[dict] = {"type": "must be a table", "unknown": "unknown field"}


def _currency_code(value: str) -> None:
    if not (len(value) == 3 and value.isalpha()):
        raise ValidationError("must be a 3-letter ISO 4217 code")


def _http_url(**kwargs) -> fields.String:
    message = "must be an http(s) URL"
    return fields.String(validate=validate.Regexp(r"^https?://", error=message),
                         error_messages={"invalid": message}, **kwargs)


def _positive_integer(default: int) -> StrictInteger:
    message = "must be a positive integer"
    return StrictInteger(load_default=default, validate=validate.Range(min=1, error=message),
                         error_messages={"invalid": message})


class SiteSchema(_Table):
    currency = fields.String(load_default=SiteConfig.currency, validate=_currency_code,
                             error_messages={"invalid": "must be a 3-letter ISO 4217 code"})
    return_url = _http_url(load_default=SiteConfig.return_url)
    base_url = _http_url(load_default=SiteConfig.base_url)
    hold_minutes = _positive_integer(SiteConfig.hold_minutes)
    unpaid_orders_per_customer = _positive_integer(SiteConfig.unpaid_orders_per_customer)
    unpaid_units_per_customer = _positive_integer(SiteConfig.unpaid_units_per_customer)
    idempotency_keys_per_customer = _positive_integer(SiteConfig.idempotency_keys_per_customer)
    storefront = StrictBoolean(load_default=SiteConfig.storefront,
                               error_messages={"invalid": "must be true or false"})


class MetricsSchema(_Table):
    access = fields.String(load_default=MetricsConfig.access,
                           validate=validate.OneOf(METRICS_ACCESS, error=f"must be one of {', '.join(METRICS_ACCESS)}"),
                           error_messages={"invalid": f"must be one of {', '.join(METRICS_ACCESS)}"})


class MethodSchema(_Table):
    id = StrictInteger(required=True, validate=validate.Range(min=1, error="must be a positive integer"),
                       error_messages={"invalid": "must be a positive integer",
                                       "required": "must be a positive integer"})
    provider = fields.String(required=True, validate=validate.Length(min=1, error="must be a provider name"),
                             error_messages={"invalid": "must be a provider name",
                                             "required": "must be a provider name"})
    title = fields.String(load_default=None, validate=validate.Predicate("strip", error="must be a non-empty string"),
                          error_messages={"invalid": "must be a non-empty string"})
    active = StrictBoolean(load_default=True, error_messages={"invalid": "must be true or false"})
    settings = fields.Dict(load_default=dict, error_messages={"invalid": "must be a table"})


def _methods(kind: str) -> fields.List:
    return fields.List(fields.Nested(MethodSchema), load_default=list, data_key=f"{kind}_methods",
                       error_messages={"invalid": f"[[{kind}_methods]] must be an array of tables"})


class ConfigSchema(_Table):
    site = fields.Nested(SiteSchema, required=True)  # parse_config gives an empty one by default
    metrics = fields.Nested(MetricsSchema, load_default=dict)
    payment_methods = _methods("payment")
    shipping_methods = _methods("shipping")

    @validates("payment_methods")
    def _unique_payment_ids(self, methods, **kwargs):
        _unique_ids(methods, "payment")

    @validates("shipping_methods")
    def _unique_shipping_ids(self, methods, **kwargs):
        _unique_ids(methods, "shipping")


def _unique_ids(methods: list[dict], kind: str) -> None:
    seen: set[int] = set()
    for index, method in enumerate(methods):
        if "id" not in method:  # an entry with errors of its own, reported first
            continue
        if method["id"] in seen:
            message = f"[[{kind}_methods]] id {method['id']} appears twice (ids are unique per kind)"
            raise ValidationError({index: {"id": [message]}})
        seen.add(method["id"])


def parse_config(raw: dict, path: str | None) -> Config:
    where = path or "<config>"
    try:
        data = ConfigSchema().load({"site": {}, **raw})
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_first_problem(exc.messages, raw)}") from None
    site = data["site"]
    return Config(
        path,
        SiteConfig(currency=site["currency"].upper(), return_url=site["return_url"],
                   base_url=site["base_url"].rstrip("/"), hold_minutes=site["hold_minutes"],
                   storefront=site["storefront"], **{name: site[name] for name in LIMITS}),
        _method_configs(data["payment_methods"], "payment"),
        _method_configs(data["shipping_methods"], "shipping"),
        MetricsConfig(**data["metrics"]),
    )


def _method_configs(methods: list[dict], kind: str) -> tuple[MethodConfig, ...]:
    return tuple(MethodConfig(kind, m["id"], m["provider"], m["title"] or m["provider"], m["active"],
                              m["settings"]) for m in methods)


def _table_problem(section: str, problems: dict, schema: type) -> str:
    """The first problem of a plain `[section]` table, in the schema's field order."""
    if "_schema" in problems:
        return f"[{section}] must be a table"
    known = schema().fields
    unknown = sorted(name for name in problems if name not in known)
    if unknown:
        return f"[{section}]: unknown field(s): {', '.join(unknown)}"
    name = next(name for name in known if name in problems)
    return f"[{section}] {name}: {problems[name][0]}"


def _first_problem(messages: dict, raw: dict) -> str:
    """marshmallow's messages as the one line an admin reads: section, method, field, problem.

    Problems are reported in the file's reading order, one at a time, as a person fixes them.
    """
    unknown = sorted(name for name in messages if name not in ConfigSchema().fields)
    if unknown:
        return f"unknown section(s): {', '.join(unknown)}"
    for section, schema in (("site", SiteSchema), ("metrics", MetricsSchema)):
        if section in messages:
            return _table_problem(section, messages[section], schema)
    for kind in ("payment", "shipping"):
        section = f"{kind}_methods"
        if section not in messages:
            continue
        problems = messages[section]
        if isinstance(problems, list):
            return problems[0]
        index = min(problems)
        return _method_problem(problems[index], raw[section][index], kind, index)
    raise AssertionError(f"unexpected config messages: {messages}")  # pragma: no cover


def _method_problem(problems: dict, entry, kind: str, index: int) -> str:
    label = f"{kind}_methods[{index}]"
    if "_schema" in problems:
        return f"{label}: {problems['_schema'][0]}"
    if "id" in problems and "appears twice" not in problems["id"][0]:
        return f"{label}: id: {problems['id'][0]}"
    label = f"{kind} method {entry['id']}"
    unknown = sorted(name for name in problems if name not in MethodSchema().fields)
    if unknown and "id" not in problems:
        return f"{label}: unknown field(s): {', '.join(unknown)}"
    name = next(name for name in MethodSchema().fields if name in problems)
    return f"{label}: {name}: {problems[name][0]}"
