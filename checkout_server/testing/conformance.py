"""Conformance checks: does a provider class keep the provider contract?"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from marshmallow import Schema

from checkout_server.plugin.providers import (
    MAX_MONEY,
    Address,
    Cart,
    Method,
    PaymentProvider,
    PaymentStart,
    Provider,
    ShippingProvider,
    Support,
)
from checkout_server.testing.shop import (
    load_provider,
    make_address,
    make_cart,
    make_order,
    make_urls,
)

# -- conformance checks of the provider contract
#
# These check a provider *class*. A misspelled hook (`register_payment_provider`) is not
# theirs to find: TestShop and plugin loading refuse it (pluginmanager.check_hooks).

def _sample_carts() -> list[Cart]:
    return [
        make_cart(),
        make_cart({"price": 250, "quantity": 3, "weight": 2000}),
        make_cart({"price": 1500, "digital": True, "weight": 0}),
        make_cart({"price": 999}, {"price": 5000, "digital": True, "weight": 0}),
        make_cart({"price": 10_000_000, "quantity": 5, "weight": 50_000}),
    ]


def _describe_cart(cart: Cart) -> str:
    """A sample cart as a failing check names it: what each line is, and the totals."""
    lines = ", ".join(
        f"{line.quantity} x {line.unit_price} ({'digital' if line.digital else f'{line.weight} g each'})"
        for line in cart.lines)
    return (f"<{lines}; subtotal {cart.subtotal}, shipping {cart.shipping_cost}, "
            f"total {cart.total} {cart.currency}, {cart.weight} g>")


def _call(who: str, sample: str, function: Callable, *args) -> Any:
    """`function(*args)`, with an exception turned into a failure naming `who` and the sample."""
    try:
        return function(*args)
    except Exception as exc:
        raise AssertionError(f"{who} raised {type(exc).__name__}({exc}) on {sample}") from exc


def _run_coroutine(make: Callable[[], Any]) -> Any:
    """Run `make()`'s coroutine to its end from synchronous code, in or out of a running loop.

    A thread of its own with its own event loop: the caller may be a sync test or a
    `gen_test` coroutine, and the caller's loop is left as it was.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, make()).result()


def _instantiate(cls, base: type, kind: str, settings: Mapping[str, Any]) -> Provider:
    assert isinstance(cls, type) and issubclass(cls, base), f"{cls!r} must subclass {base.__name__}"
    name = getattr(cls, "name", None)
    assert isinstance(name, str) and name.isidentifier() and name == name.lower(), (
        f"{cls.__name__}.name must be a lowercase identifier, got {name!r}")
    assert cls.kind == kind, f"{cls.__name__}.kind must be {kind!r}"
    schema = getattr(cls, "settings_schema", None)
    assert isinstance(schema, type) and issubclass(schema, Schema), (
        f"{cls.__name__}.settings_schema must be a marshmallow Schema class")
    loaded = schema().load(dict(settings))  # raises ValidationError with the field name
    provider = cls(Method(1, f"Test {name}", kind), loaded)
    for hook in ("startup", "close"):
        assert inspect.iscoroutinefunction(getattr(provider, hook)), f"{cls.__name__}.{hook} must be async"
    return provider


def _assert_support(answer, who: str, sample: str) -> None:
    assert isinstance(answer, Support), f"{who} must return a Support, got {answer!r} on {sample}"
    if not answer.ok:
        assert isinstance(answer.reason, str) and answer.reason.strip(), (
            f"{who} said no without a human-readable reason on {sample}")


def _overrides(cls, hook: str) -> bool:
    return getattr(cls, hook) is not getattr(PaymentProvider, hook)


def check_payment_provider(cls, settings: Mapping[str, Any] | None = None,
                           carts: list[Cart] | None = None, *,
                           run_start: bool = True) -> PaymentProvider:
    """Assert that `cls` keeps the payment provider contract; returns an instance.

    Checks name, kind, flow, that `settings_schema` loads `settings`, that `supports()`
    answers a `Support` (with a reason when it says no) for a range of carts, that the
    gateway methods are coroutines, and that the core can learn how a payment ended:

    - redirect flow: `check()` or `verify_return()` is overridden (the defaults cannot know);
    - direct flow: `start()` is run on a sample order (on an instance of its own, between
      `startup()` and `close()`) and must return a `PaymentStart`; one that is not
      `settled=True` leaves orders on HOLD, so `check()` or `parse_notification()` must be
      overridden to settle them later. `run_start=False` skips running it, for a direct
      `start()` that calls a gateway: test that one against its fake.
    """
    provider = _instantiate(cls, PaymentProvider, "payment", settings or {})
    flow = getattr(cls, "flow", None)
    assert flow in ("redirect", "direct"), f"{cls.__name__}.flow must be 'redirect' or 'direct', got {flow!r}"
    for hook in ("start", "verify_return", "check", "parse_notification", "cancel_payment", "refund",
                 "check_refund"):
        assert inspect.iscoroutinefunction(getattr(provider, hook)), f"{cls.__name__}.{hook} must be async"
    assert _overrides(cls, "start"), f"{cls.__name__} must implement start()"
    if flow == "redirect":
        assert _overrides(cls, "check") or _overrides(cls, "verify_return"), (
            f"{cls.__name__}: a redirect provider must override check() or verify_return() — "
            f"the core cannot know the payment was made")
    for cart in carts or _sample_carts():
        sample = f"the sample cart {_describe_cart(cart)}"
        who = f"{cls.__name__}.supports()"
        _assert_support(_call(who, sample, provider.supports, cart), who, sample)
    if flow == "direct" and run_start:
        _check_direct_start(cls, settings or {})
    return provider


def _check_direct_start(cls, settings: Mapping[str, Any]) -> None:
    provider = load_provider(cls, settings)
    order = make_order()
    sample = f"the sample order {order.order_key} ({order.total} {order.currency})"

    async def run():
        await provider.startup()
        try:
            return await provider.start(order, make_urls(provider.method.id, order.order_key))
        finally:
            await provider.close()

    start = _call(f"{cls.__name__}.start()", sample, _run_coroutine, run)
    assert isinstance(start, PaymentStart), (
        f"{cls.__name__}.start() must return a PaymentStart, got {start!r} on {sample}")
    if not start.settled:
        assert _overrides(cls, "check") or _overrides(cls, "parse_notification"), (
            f"{cls.__name__}.start() left {sample} unsettled (a PaymentStart without settled=True): "
            f"the order waits on HOLD, so override check() (asked when the hold expires) or "
            f"parse_notification() to settle it later; as it is, every such order is cancelled "
            f"at hold expiry. Return PaymentStart(settled=True) if the order is settled now")


def check_shipping_provider(cls, settings: Mapping[str, Any] | None = None,
                            carts: list[Cart] | None = None,
                            addresses: list[Address] | None = None) -> ShippingProvider:
    """Assert that `cls` keeps the shipping provider contract; returns an instance.

    Checks name, kind, that `settings_schema` loads `settings`, that `supports()` answers a
    `Support` and that `quote()` is an integer from 0 to MAX_MONEY (minor units) whenever
    `supports()` said yes, for a range of carts and addresses.
    """
    provider = _instantiate(cls, ShippingProvider, "shipping", settings or {})
    assert not inspect.iscoroutinefunction(provider.quote), f"{cls.__name__}.quote must not be async"
    for cart in carts or _sample_carts():
        for address in addresses or [make_address(), make_address(id=2, country="DE", city="Berlin")]:
            sample = f"the sample cart {_describe_cart(cart)} to {address.country}"
            who = f"{cls.__name__}.supports()"
            support = _call(who, sample, provider.supports, cart, address)
            _assert_support(support, who, sample)
            if support:
                cost = _call(f"{cls.__name__}.quote()", sample, provider.quote, cart, address)
                assert isinstance(cost, int) and not isinstance(cost, bool) and cost >= 0, (
                    f"{cls.__name__}.quote() must return a non-negative int (minor units), "
                    f"got {cost!r} on {sample}")
                assert cost <= MAX_MONEY, (
                    f"{cls.__name__}.quote() must return at most MAX_MONEY ({MAX_MONEY}), "
                    f"got {cost!r} on {sample}")
    return provider
