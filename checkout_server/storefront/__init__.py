"""The demo storefront: plain HTML, CSS and JavaScript shipped with the package, no build step.

It uses only the public JSON API with a customer's token. `handlers/storefront.py` serves
these files at `/` and `/orders/{order_key}` when `[site] storefront` is on (`serve --demo`
turns it on).
"""

from functools import cache
from importlib import resources

PAGE = "index.html"
ASSETS = {
    "storefront.js": "text/javascript; charset=UTF-8",
    "storefront.css": "text/css; charset=UTF-8",
}


@cache
def read(name: str) -> bytes:
    """One of this package's files (PAGE or an ASSETS name), read once."""
    return resources.files(__name__).joinpath(name).read_bytes()
