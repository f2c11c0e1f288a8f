"""Dates an analyst can trust: parsed in CJK forms, zoned, and never in the future."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.models import PublishedFrom

LANGUAGE_ZONES = {"zh-Hans": "Asia/Shanghai", "zh-Hant": "Asia/Taipei", "ja": "Asia/Tokyo", "en": "UTC"}
FUTURE_TOLERANCE = timedelta(days=1)

_CJK_DATE = re.compile(
    r"(?P<y>\d{4})\s*[年/.\-]\s*(?P<m>\d{1,2})\s*[月/.\-]\s*(?P<d>\d{1,2})\s*日?"
    r"(?:\s*[T\s]?\s*(?P<H>\d{1,2})\s*[:時时]\s*(?P<M>\d{1,2})(?:\s*[:分]\s*(?P<S>\d{1,2}))?)?"
    r"\s*(?P<tz>Z|[+-]\d{2}:?\d{2})?"
)


def zone_for(language: str, configured: str | None = None) -> ZoneInfo:
    name = configured or LANGUAGE_ZONES.get(language, "UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def parse_date(text: str | None, zone: ZoneInfo) -> datetime | None:
    """ISO 8601, RFC 822, and 2026年1月6日 16:20 / 2026-01-06 16:20 forms; None if unparseable.

    A date without a zone is taken to be in `zone`.
    """
    if not text:
        return None
    text = text.strip()[:100]
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            parsed = _parse_cjk(text)
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)


def _parse_cjk(text: str) -> datetime | None:
    match = _CJK_DATE.search(text)
    if not match:
        return None
    g = match.groupdict()
    try:
        value = datetime(
            int(g["y"]),
            int(g["m"]),
            int(g["d"]),
            int(g["H"] or 0),
            int(g["M"] or 0),
            int(g["S"] or 0),
        )
    except ValueError:
        return None
    if g["tz"]:
        return datetime.fromisoformat(value.isoformat() + g["tz"].replace("Z", "+00:00"))
    return value


def choose_published(
    page: datetime | None,
    feed: datetime | None,
    fetched: datetime,
    page_has_time: bool = True,
    zone_assumed: bool = False,
    page_guessed: bool = False,
) -> tuple[datetime, PublishedFrom, list[str]]:
    """published_at from the page, else the feed, else the fetch time; clamp the future.

    A page that shows the day only yields to a feed timestamp on that day: midnight is
    not a publication time. A day guessed from the page's text (htmldate's extensive
    search, which reads a copyright year as 1 January) yields to any feed date.

    Returns:
        (published_at, where it came from (page, feed or fetched), flags such as `future_clamped`, `zone_assumed`).
    """
    flags: list[str] = []
    if page and feed and not page_has_time and (page_guessed or feed.astimezone(page.tzinfo).date() == page.date()):
        page = None
    value, source = (
        (page, PublishedFrom.PAGE) if page else (feed, PublishedFrom.FEED) if feed else (fetched, PublishedFrom.FETCHED)
    )
    assert value is not None
    if page and feed and abs(page - feed) > FUTURE_TOLERANCE:
        flags.append("page_feed_disagree")
    if source is PublishedFrom.PAGE and zone_assumed:
        flags.append("zone_assumed")
    if value - fetched > FUTURE_TOLERANCE:
        flags.append("future_clamped")
        value = fetched
    return value, source, flags
