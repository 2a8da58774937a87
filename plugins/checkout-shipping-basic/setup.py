from setuptools import setup

setup(
    name="checkout-shipping-basic",
    version="0.1.0",
    description="Basic shipping methods for checkout-server: flat rate, free over a threshold, "
                "weight table, store pickup, digital delivery.",
    python_requires=">=3.11",
    packages=["checkout_shipping_basic"],
    install_requires=["checkout-server"],
    entry_points={"checkout_server": ["shipping_basic = checkout_shipping_basic"]},
)
