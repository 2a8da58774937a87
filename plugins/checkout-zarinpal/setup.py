from setuptools import setup

setup(
    name="checkout-zarinpal",
    version="0.1.0",
    description="Zarinpal v4 payment gateway for checkout-server, with a local fake of the gateway.",
    python_requires=">=3.11",
    packages=["checkout_zarinpal"],
    install_requires=["checkout-server", "aiohttp>=3.9,<4", "marshmallow>=3.20,<5"],
    entry_points={"checkout_server": ["zarinpal = checkout_zarinpal"]},
)
