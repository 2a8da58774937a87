"""Handlers for the cart area."""

default_handlers: list = []
