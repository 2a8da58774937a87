"""HTTP handlers, one module per area; each ends in its `default_handlers` URL list."""

from checkout_server.handlers import (
    account,
    admin,
    cart,
    checkout,
    health,
    methods,
    orders,
)

AREAS = (health, account, cart, checkout, orders, admin, methods)


def all_handlers() -> list:
    routes: list = []
    for area in AREAS:
        routes.extend(area.default_handlers)
    return routes
