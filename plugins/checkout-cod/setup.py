from setuptools import setup

setup(
    name="checkout-cod",
    version="0.1.0",
    description="Cash on delivery payment for checkout-server.",
    python_requires=">=3.11",
    packages=["checkout_cod"],
    install_requires=["checkout-server"],
    entry_points={"checkout_server": ["cash_on_delivery = checkout_cod"]},
)
