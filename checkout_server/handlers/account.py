"""Handlers for the account area."""

default_handlers: list = []
