"""Handlers for the orders area."""

default_handlers: list = []
