"""checkout-server: a Tornado checkout service with pluggy payment and shipping providers."""

__version__ = "0.1.0"
