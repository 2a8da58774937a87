from setuptools import setup

setup(
    name="checkout-sandbox",
    version="0.1.0",
    description="Sandbox payments for checkout-server: a test gateway page served by the service itself.",
    python_requires=">=3.11",
    packages=["checkout_sandbox"],
    install_requires=["checkout-server", "aiohttp>=3.9,<4"],
    entry_points={"checkout_server": ["sandbox = checkout_sandbox"]},
)
