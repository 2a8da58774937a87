"""Handlers for the checkout area."""

default_handlers: list = []
