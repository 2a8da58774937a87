"""HTTP handlers, one module per area; each ends in its `default_handlers` URL list."""

from . import account, admin, cart, checkout, health, orders

AREAS = (health, account, cart, checkout, orders, admin)


def all_handlers() -> list:
    routes: list = []
    for area in AREAS:
        routes.extend(area.default_handlers)
    return routes
