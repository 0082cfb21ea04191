"""UTC time stamps in the one format examkit writes: ISO 8601 with ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> str:
    """Now, UTC, microseconds, e.g. ``2026-11-23T14:54:00.123456Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
