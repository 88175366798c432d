"""Time values as twin handles them everywhere: timezone-aware UTC datetimes, from ISO 8601 text or datetimes."""

from __future__ import annotations

from datetime import UTC, datetime


def to_utc(value: str | datetime | None) -> datetime | None:
    """ISO 8601 text (``Z`` accepted) or a datetime as an aware UTC datetime; naive times count as UTC.

    Raises ValueError for text that is not ISO 8601; callers turn it into their own clear error.
    """
    if value is None or value == "":
        return None
    t = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
