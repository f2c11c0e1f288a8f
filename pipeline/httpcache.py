"""How long a feed response says it stays fresh: no poll of that feed comes sooner.

A private cache's reading of RFC 9111: `Cache-Control: max-age` (less `Age`), else
`Expires` − `Date`; `no-store` and `no-cache` mean nothing is promised (the next
poll still asks conditionally). Capped, so a far-future Expires cannot silence a feed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

MAX_HOLD = timedelta(hours=24)


def fresh_for(headers: Mapping[str, str], now: datetime) -> timedelta:
    """The response's freshness lifetime left, between zero and MAX_HOLD."""
    directives = {}
    for part in headers.get("cache-control", "").split(","):
        name, _, value = part.strip().partition("=")
        directives[name.lower()] = value.strip().strip('"')
    if "no-store" in directives or "no-cache" in directives:
        return timedelta(0)
    if "max-age" in directives:
        seconds = _int(directives["max-age"]) - _int(headers.get("age", "0"))
        return min(max(timedelta(seconds=seconds), timedelta(0)), MAX_HOLD)
    expires = _date(headers.get("expires"))
    if expires is None:
        return timedelta(0)
    return min(max(expires - (_date(headers.get("date")) or now), timedelta(0)), MAX_HOLD)


def _int(value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        return 0


def _date(value: str | None) -> datetime | None:
    """An HTTP date; None when missing or invalid (Expires: 0 and the like mean already expired)."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else None
