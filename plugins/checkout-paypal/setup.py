from setuptools import setup

setup(
    name="checkout-paypal",
    version="0.1.0",
    description="PayPal Orders v2 for checkout-server, with a local fake of the gateway.",
    python_requires=">=3.11",
    packages=["checkout_paypal"],
    install_requires=["checkout-server", "aiohttp>=3.9,<4", "marshmallow>=3.20,<5"],
    entry_points={"checkout_server": ["paypal = checkout_paypal"]},
)
