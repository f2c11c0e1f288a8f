"""JSON list endpoints as sources (a site whose list page is filled in by its own scripts).

feeds.yaml names where the items are and which of their fields hold the URL, the
title and the date, as dotted paths (`data.list`, `url`, `info.pubTime`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

from pipeline.dates import parse_date
from pipeline.fetch import FetchError, FetchReason
from pipeline.models import Feed, JsonFields, ParsedFeed
from pipeline.sourceentries import EntryCollector


def parse_json_list(
    feed: Feed, body: bytes, url: str | None = None, headers: Mapping[str, str] | None = None
) -> ParsedFeed:
    """Entries of a JSON list answer.

    Raises:
        FetchError: `malformed_json` when the answer is not JSON or has no list at the configured path.
    """
    fields = feed.json or JsonFields(items="", url="url")
    try:
        document = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FetchError(feed.url, FetchReason.MALFORMED_JSON, f"json {feed.name}: {exc}") from None
    items = _at(document, fields.items)
    if not isinstance(items, list):
        raise FetchError(feed.url, FetchReason.MALFORMED_JSON, f"json {feed.name}: no list at {fields.items!r}")
    collected = EntryCollector(feed, feed.language)
    for item in items:
        raw = _at(item, fields.url)
        link = urljoin(url or feed.url, raw.strip()) if isinstance(raw, str) and raw.strip() else ""
        collected.add(
            link,
            str(_at(item, fields.title) or "").strip() if fields.title else "",
            _date(_at(item, fields.date) if fields.date else None, collected.zone),
        )
    return ParsedFeed("", collected.entries, collected.without_link, None, "utf-8", feed.language)


def _date(value: Any, zone: ZoneInfo) -> datetime | None:
    """A date field: text, or seconds or milliseconds since the epoch (as list APIs send them)."""
    if isinstance(value, bool) or value in (None, ""):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
    return parse_date(str(value), zone)


def _at(value: Any, path: str) -> Any:
    """The value at a dotted path ("" is the value itself); None where the path does not lead."""
    for key in [k for k in path.split(".") if k]:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value
