from setuptools import setup

setup(
    name="checkout-stripe",
    version="0.1.0",
    description="Stripe Checkout Sessions for checkout-server, with a local fake of the gateway.",
    python_requires=">=3.11",
    packages=["checkout_stripe"],
    install_requires=["checkout-server", "aiohttp>=3.9,<4", "marshmallow>=3.20,<5"],
    entry_points={"checkout_server": ["stripe = checkout_stripe"]},
)
