from setuptools import setup

setup(
    name="checkout-example-plugin",
    version="0.1.0",
    description="An example checkout-server plugin: shipping priced by destination country.",
    python_requires=">=3.11",
    packages=["checkout_example_plugin"],
    install_requires=["checkout-server", "marshmallow>=3.20"],
    extras_require={"test": ["pytest", "pytest-tornado", "mongomock-motor"]},
    # The one line that makes this a plugin: checkout-server loads the `checkout_server`
    # entry-point group at start-up.
    entry_points={"checkout_server": ["example = checkout_example_plugin"]},
)
