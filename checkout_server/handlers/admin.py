"""Handlers for the admin area."""

default_handlers: list = []
