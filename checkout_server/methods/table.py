"""The method table: configured methods bound to provider instances.

A table is built whole from a config and the registered providers, then swapped in one
assignment (SIGHUP), so a request holds one consistent table from start to end.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from marshmallow import ValidationError

from checkout_server.config import Config, ConfigError, MethodConfig
from checkout_server.payments import provider_calls
from checkout_server.plugin.manager import PLUGINS_ENV
from checkout_server.plugin.providers import (
    Method,
    PaymentProvider,
    Provider,
    ShippingProvider,
    Site,
)
from checkout_server.storage.plugin_documents import PluginDocuments

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BoundMethod:
    config: MethodConfig
    provider: Provider

    @property
    def id(self) -> int:
        return self.config.id

    @property
    def title(self) -> str:
        return self.config.title

    @property
    def active(self) -> bool:
        return self.config.active


class MethodTable:
    def __init__(self, config: Config, payment: dict[int, BoundMethod], shipping: dict[int, BoundMethod]):
        self.config = config
        self.payment = payment
        self.shipping = shipping

    @classmethod
    def build(cls, config: Config, payment_providers: dict, shipping_providers: dict,
              documents_for: Callable[[type], PluginDocuments] | None = None) -> MethodTable:
        """Bind each configured method to an instance of its provider; `documents_for(cls)`
        gives the instance its plugin's documents (none when only checking a config)."""
        payment = {m.id: _bind(m, payment_providers, PaymentProvider, config, documents_for)
                   for m in config.payment_methods}
        shipping = {m.id: _bind(m, shipping_providers, ShippingProvider, config, documents_for)
                    for m in config.shipping_methods}
        return cls(config, payment, shipping)

    @property
    def site(self):
        return self.config.site

    def active_payment(self, method_id) -> BoundMethod | None:
        method = self.payment.get(method_id)
        return method if method is not None and method.active else None

    def active_shipping(self, method_id) -> BoundMethod | None:
        method = self.shipping.get(method_id)
        return method if method is not None and method.active else None

    def describe(self) -> list[dict]:
        """Every configured method as `plugins --config --json` and GET /api/admin/plugins show it."""
        described = []
        for m in (*self.payment.values(), *self.shipping.values()):
            entry = {"id": m.id, "kind": m.config.kind, "provider": m.config.provider,
                     "title": m.title, "active": m.active}
            if m.config.kind == "payment":
                entry["flow"] = m.provider.flow
            described.append(entry)
        return described

    def providers(self) -> list[Provider]:
        return [m.provider for m in (*self.payment.values(), *self.shipping.values())]

    async def startup(self) -> None:
        for provider in self.providers():
            await provider_calls.open_provider(provider)

    async def close(self) -> None:
        for provider in self.providers():
            await provider_calls.close_provider(provider)


def _bind(method: MethodConfig, registry: dict, base: type, config: Config,
          documents_for: Callable[[type], PluginDocuments] | None) -> BoundMethod:
    where = f"{config.path or '<config>'}: {method.kind} method {method.id}"
    cls = registry.get(method.provider)
    if cls is None:
        allowed = os.environ.get(PLUGINS_ENV)
        known = ", ".join(sorted(registry)) or ("none loaded" if allowed is not None else "none installed")
        # The provider may well be installed, its plugin left out by CHECKOUT_PLUGINS.
        limit = f' — {PLUGINS_ENV}="{allowed}" limits which plugins load' if allowed is not None else ""
        raise ConfigError(f"{where}: provider: unknown {method.kind} provider "
                          f"{method.provider!r} (known: {known}){limit}")
    if not issubclass(cls, base):
        raise ConfigError(f"{where}: provider: {method.provider!r} is not a {method.kind} provider")
    try:
        settings = cls.settings_schema().load(method.settings)
    except ValidationError as exc:
        problems = "; ".join(f"settings.{name}: {message}"
                             for name, message in _flatten(exc.normalized_messages()))
        raise ConfigError(f"{where}: {problems}") from None
    instance = cls(Method(method.id, method.title, method.kind), settings)
    instance.site = Site(base_url=config.site.base_url, currency=config.site.currency)
    if documents_for is not None:
        instance.documents = documents_for(cls)
    return BoundMethod(method, instance)


def _flatten(messages, prefix: str = "") -> list[tuple[str, str]]:
    """marshmallow's nested messages as ("rates.0.cost", "Must be ...") pairs."""
    if isinstance(messages, dict):
        pairs = []
        for key, value in messages.items():
            pairs += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return sorted(pairs)
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [(prefix or "_schema", " ".join(messages))]
    if isinstance(messages, list):
        return [pair for m in messages for pair in _flatten(m, prefix)]
    return [(prefix or "_schema", str(messages))]
