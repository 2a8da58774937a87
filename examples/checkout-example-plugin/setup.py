from setuptools import setup

setup(
    name="checkout-example-plugin",
    version="0.1.0",
    description="An example checkout-server plugin: shipping by destination country, pay by invoice.",
    python_requires=">=3.11",
    packages=["checkout_example_plugin"],
    # checkout-server is not on the package index: install it from its repository first
    # (pip install -e /path/to/checkout-server); pip then finds this requirement met.
    install_requires=["checkout-server", "marshmallow>=3.20"],
    # Pinned as checkout-server pins them: pytest-tornado breaks on pytest 10.
    extras_require={"test": ["pytest>=8,<10", "pytest-tornado>=0.8,<0.9", "mongomock-motor>=0.0.30,<0.1"]},
    # The one line that makes this a plugin: checkout-server loads the `checkout_server`
    # entry-point group at start-up.
    entry_points={"checkout_server": ["example = checkout_example_plugin"]},
)
