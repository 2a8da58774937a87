"""The checkout's clock: one place, so that tests can move it (`clock.utcnow`)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The clock (tests replace it to move the order year or hold expiry).

    Callers read it as `clock.utcnow()`, at call time, so a replacement reaches them all.
    """
    return datetime.now(UTC)
