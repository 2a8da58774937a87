"""HTTP handlers, one module per area; each ends in its `default_handlers` URL list."""

from tornado.web import URLSpec

from checkout_server.handlers import (
    account,
    admin,
    cart,
    catalog,
    checkout,
    health,
    methods,
    operations,
    orders,
    storefront,
)

AREAS = (health, account, catalog, cart, checkout, orders, admin, methods, storefront, operations)


def all_handlers() -> list:
    routes: list = []
    for area in AREAS:
        routes.extend(area.default_handlers)
    return routes


def reverse_url(name: str, *args) -> str:
    """The path of the core's route `name` for `args`, as the Application's `reverse_url`
    builds it (for code that has no Application at hand: the test kit)."""
    for route in all_handlers():
        if len(route) == 4 and route[3] == name:
            return URLSpec(*route).reverse(*args)
    raise KeyError(f"no route named {name!r}")
