from setuptools import find_packages, setup

setup(
    name="checkout-server",
    version="0.1.0",
    description="Checkout service: turns a shopper's cart into an order and starts its payment.",
    python_requires=">=3.11",
    packages=find_packages(include=["checkout_server", "checkout_server.*"]),
    include_package_data=True,
    # Also in MANIFEST.in, for the sdist.
    package_data={"checkout_server": ["demo/*.toml"],
                  "checkout_server.storefront": ["*.html", "*.css", "*.js"]},
    install_requires=[
        "tornado>=6.4,<7",
        "pymongo>=4.13,<5",
        "pluggy>=1.5,<2",
        "marshmallow>=3.20,<5",
        "aiohttp>=3.9,<4",
        "nx-27017>=0.8.1,<0.9",
        "apispec[marshmallow]>=6.8,<7",
        "prometheus-client>=0.20,<1",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            "pytest-tornado>=0.8,<0.9",
            "mongomock-motor>=0.0.30,<0.1",
            "ruff>=0.5",
            "openapi-spec-validator>=0.7,<0.10",
            "schemathesis>=4.0,<5",
            # Browser tests of the demo storefront; they drive the system's Chromium.
            "selenium>=4.20,<5",
        ],
    },
    entry_points={"console_scripts": ["checkout-server=checkout_server.cli:main"]},
)
