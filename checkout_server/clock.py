"""The service's one clock: every reader of the time asks it, so tests move time in one place.

A leaf module (it imports nothing of ours): storage, the checkout lock, idempotency keys,
reservations and the sweeper all read `clock.utcnow()` or `clock.timestamp()` at call time,
so a test that replaces `clock.utcnow` (`monkeypatch.setattr(clock, "utcnow", ...)`) moves
all of them at once. Process timing (waiting for a child to exit) is not the shop's time
and keeps to `time.monotonic`.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, timezone-aware UTC. Tests replace this function to move the time."""
    return datetime.now(UTC)


def timestamp() -> float:
    """Now as epoch seconds (leases and locks are stored as floats): the same clock."""
    return utcnow().timestamp()
