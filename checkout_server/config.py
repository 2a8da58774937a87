"""The config file (TOML): site settings and the payment and shipping methods.

Every error names the file, the method and the field, so an admin can fix it at once.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_config(raw: dict, path: str | None) -> Config:
    where = path or "<config>"
    unknown = set(raw) - {"site", "payment_methods", "shipping_methods"}
    if unknown:
        raise ConfigError(f"{where}: unknown section(s): {', '.join(sorted(unknown))}")
    site = _parse_site(raw.get("site", {}), where)
    payment = _parse_methods(raw.get("payment_methods", []), "payment", where)
    shipping = _parse_methods(raw.get("shipping_methods", []), "shipping", where)
    return Config(path, site, payment, shipping)


def _parse_site(raw, where) -> SiteConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [site] must be a table")
    defaults = SiteConfig()
    unknown = set(raw) - set(SiteConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"{where}: [site]: unknown field(s): {', '.join(sorted(unknown))}")
    currency = raw.get("currency", defaults.currency)
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha()):
        raise ConfigError(f"{where}: [site] currency: must be a 3-letter ISO 4217 code")
    hold = raw.get("hold_minutes", defaults.hold_minutes)
    if not _is_int(hold) or hold < 1:
        raise ConfigError(f"{where}: [site] hold_minutes: must be a positive integer")
    for name in ("return_url", "base_url"):
        value = raw.get(name, getattr(defaults, name))
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: [site] {name}: must be an http(s) URL")
    limits = {name: raw.get(name, getattr(defaults, name)) for name in LIMITS}
    for name, value in limits.items():
        if not _is_int(value) or value < 1:
            raise ConfigError(f"{where}: [site] {name}: must be a positive integer")
    storefront = raw.get("storefront", defaults.storefront)
    if not isinstance(storefront, bool):
        raise ConfigError(f"{where}: [site] storefront: must be true or false")
    return SiteConfig(
        currency=currency.upper(),
        return_url=raw.get("return_url", defaults.return_url),
        base_url=raw.get("base_url", defaults.base_url).rstrip("/"),
        hold_minutes=hold,
        **limits,
        storefront=storefront,
    )


def _parse_methods(raw, kind, where) -> tuple[MethodConfig, ...]:
    section = f"{kind}_methods"
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: [[{section}]] must be an array of tables")
    seen: set[int] = set()
    methods = []
    for index, entry in enumerate(raw):
        label = f"{where}: {section}[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{label}: must be a table")
        method_id = entry.get("id")
        if not _is_int(method_id) or method_id < 1:
            raise ConfigError(f"{label}: id: must be a positive integer")
        label = f"{where}: {kind} method {method_id}"
        if method_id in seen:
            raise ConfigError(f"{label}: id: [[{section}]] id {method_id} appears twice "
                              f"(ids are unique per kind)")
        seen.add(method_id)
        unknown = set(entry) - {"id", "provider", "title", "active", "settings"}
        if unknown:
            raise ConfigError(f"{label}: unknown field(s): {', '.join(sorted(unknown))}")
        provider = entry.get("provider")
        if not isinstance(provider, str) or not provider:
            raise ConfigError(f"{label}: provider: must be a provider name")
        title = entry.get("title", provider)
        if not isinstance(title, str) or not title.strip():
            raise ConfigError(f"{label}: title: must be a non-empty string")
        active = entry.get("active", True)
        if not isinstance(active, bool):
            raise ConfigError(f"{label}: active: must be true or false")
        settings = entry.get("settings", {})
        if not isinstance(settings, dict):
            raise ConfigError(f"{label}: settings: must be a table")
        methods.append(MethodConfig(kind, method_id, provider, title, active, settings))
    return tuple(methods)
