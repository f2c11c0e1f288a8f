"""Feeds stage: the feed list, conditional polling, parsing, and per-feed state.

A feed that answers 304 costs one small request. A feed that fails backs off
exponentially; one bad feed never stops the others. Feed state lives in
Elasticsearch so that it survives restarts and analysts can chart it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import yaml
from elasticsearch import Elasticsearch, helpers

from pipeline.config import ConfigError, Settings
from pipeline.dates import LANGUAGE_ZONES, parse_date, zone_for
from pipeline.es import CONFLICT_RETRIES, Indices
from pipeline.feedxml import EntityBomb, prepare
from pipeline.fetch import FetchError, HostLimiter, http_get, make_client
from pipeline.langtags import canonical_language
from pipeline.models import Feed, FeedEntry, PollStatus
from pipeline.urls import UrlError, canonical_url

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=24)
BASE_BACKOFF = timedelta(minutes=5)
_FROM_CONFIG = ("name", "url", "language")
_NAME = re.compile(r"^[a-z0-9][a-z0-9\-_.]{0,80}$")


def load_feeds(path: Path, default_interval_minutes: int) -> list[Feed]:
    """Read feeds.yaml; an invalid entry raises ConfigError naming it."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    items = raw.get("feeds") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        raise ConfigError(f"{path}: needs a top-level `feeds:` list")
    feeds: list[Feed] = []
    for i, item in enumerate(items):
        label = item.get("name") if isinstance(item, dict) else None
        where = f"{path}: feeds[{i}]" + (f" ({label})" if label else "")
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: must be a mapping with name and url")
        missing = [k for k in ("name", "url") if not item.get(k)]
        if missing:
            raise ConfigError(f"{where}: missing {', '.join(missing)}")
        if not _NAME.match(str(item["name"])):
            raise ConfigError(f"{where}: name must be lower-case letters, digits and dashes")
        # Left out: the feed's own language tag, else detected from the text.
        language = canonical_language(str(item["language"])) if item.get("language") else ""
        if language is None:
            raise ConfigError(
                f"{where}: language {item['language']!r} is not a BCP 47 tag of a language the pipeline tags"
                f" (zh, zh-CN, zh-TW, zh-Hant-HK, ja-JP, en-US …: {', '.join(LANGUAGE_ZONES)})"
            )
        try:
            canonical_url(str(item["url"]))
            zone = zone_for(language, item.get("timezone")).key if language or item.get("timezone") else ""
            interval = int(item.get("interval_minutes", default_interval_minutes))
        except (UrlError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        if interval < 0:
            raise ConfigError(f"{where}: interval_minutes must be 0 (every run) or more minutes")
        feeds.append(Feed(str(item["name"]), str(item["url"]), language, interval, zone))
    names = [f.name for f in feeds]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{path}: duplicate feed names {dupes}")
    return feeds


@dataclass
class FeedState:
    """What we remember about a feed between polls (one document in the feeds index)."""

    name: str
    url: str
    language: str
    etag: str | None = None
    last_modified: str | None = None
    last_status: str | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    last_polled_at: str | None = None
    last_success_at: str | None = None
    first_success_at: str | None = None
    last_new_entry_at: str | None = None
    next_poll_at: str | None = None
    consecutive_errors: int = 0
    bozo: bool = False
    entries_last_poll: int = 0
    new_entries_last_poll: int = 0
    # Entries the feed carried without a usable link (they cannot become articles).
    without_link_last_poll: int = 0
    healthy: bool = True

    def due(self, now: datetime) -> bool:
        return not self.next_poll_at or datetime.fromisoformat(self.next_poll_at) <= now


@dataclass
class PollResult:
    feed: Feed
    status: PollStatus
    state: FeedState
    entries: list[FeedEntry] = field(default_factory=list)
    error: str | None = None
    bytes: int = 0
    without_link: int = 0


def load_states(es: Elasticsearch, indices: Indices, feeds: list[Feed]) -> dict[str, FeedState]:
    states = {f.name: FeedState(name=f.name, url=f.url, language=f.language) for f in feeds}
    if not feeds:
        return states
    found = es.mget(index=indices.feeds, ids=[f.name for f in feeds])["docs"]
    known = set(FeedState.__dataclass_fields__)
    for doc in found:
        if doc.get("found"):
            states[doc["_id"]] = FeedState(**{k: v for k, v in doc["_source"].items() if k in known})
    for feed in feeds:  # the URL or language may have been edited in feeds.yaml
        states[feed.name].url, states[feed.name].language = feed.url, feed.language
    return states


def save_states(es: Elasticsearch, indices: Indices, states: list[FeedState], loaded: Mapping[str, FeedState]) -> None:
    """Write the fields this poll changed on each feed's state, as `loaded` shows it before the poll.

    Two pollers of one feed (the monitor and maintenance's forced retry) load the same
    state; whole documents would let the later one put back what the earlier one
    changed. A partial update of the changed fields keeps both (per field, the later wins).
    """
    actions = []
    for state in states:
        before = asdict(loaded[state.name])
        after = asdict(state)
        actions.append(
            {
                "_op_type": "update",
                "_index": indices.feeds,
                "_id": state.name,
                # name, url and language come from feeds.yaml, which may have been edited: always written.
                "doc": {k: v for k, v in after.items() if k in _FROM_CONFIG or before[k] != v},
                "upsert": after,  # a feed polled for the first time
                "retry_on_conflict": CONFLICT_RETRIES,
            }
        )
    helpers.bulk(es, actions, refresh=True)


@dataclass(frozen=True)
class ParsedFeed:
    """What one feed document yields (feedparser's result converted at the boundary)."""

    title: str
    entries: list[FeedEntry]
    without_link: int  # entries with no usable link: counted, never dropped silently
    bozo: str | None  # the parser's complaint if the document was malformed
    charset: str
    language: str  # feeds.yaml's, else the feed's own tag (<language>, dc:language, Content-Language), else ""


def parse_feed(feed: Feed, body: bytes, url: str | None = None, headers: Mapping[str, str] | None = None) -> ParsedFeed:
    """Entries of one feed document, links resolved against the response URL.

    Args:
        feed: the configured feed (its name and URL appear in errors).
        body: the response body.
        url: the final response URL; the feed's URL if not given.
        headers: the response headers (Content-Type charset, Content-Location, Content-Language).

    Raises:
        FetchError: `xml_entity_bomb` when entity expansion exceeds the parser's limits.
    """
    lower = {k.lower(): v for k, v in (headers or {}).items()}
    try:
        doc = prepare(body, url or feed.url, lower)
    except EntityBomb as exc:
        raise FetchError(feed.url, "xml_entity_bomb", f"feed {feed.name}: {exc}") from None
    parsed = feedparser.parse(doc.body, response_headers=doc.headers, sanitize_html=True, resolve_relative_uris=True)
    bozo = f"{type(parsed.bozo_exception).__name__}: {parsed.bozo_exception}"[:300] if parsed.bozo else None
    language = feed.language or canonical_language(str(parsed.feed.get("language") or "")) or ""
    zone = zone_for(language, feed.timezone or None)
    timezone = feed.timezone or (zone.key if language else "")
    entries: dict[str, FeedEntry] = {}
    without_link = 0
    for item in parsed.entries:
        link = str(item.get("link") or "").strip()
        try:
            entry_url = canonical_url(link)
        except UrlError:
            without_link += 1
            continue
        published = parse_date(item.get("published") or item.get("updated"), zone)
        entries.setdefault(
            entry_url,
            FeedEntry(
                feed=feed.name,
                url=entry_url,
                link=link,
                guid=str(item.get("id") or link),
                title=_text(item.get("title")),
                summary=_text(item.get("summary")),
                published=published,
                language=language,
                timezone=timezone,
            ),
        )
    if without_link and not entries:
        log.warning("feed %s (%s): all %d entries lack a usable link", feed.name, feed.url, without_link)
    title = _text(parsed.feed.get("title"))
    return ParsedFeed(title, list(entries.values()), without_link, bozo, doc.charset, language)


def _text(value: Any) -> str:
    return re.sub(r"<[^>]+>", " ", str(value or "")).strip()[:5000]


async def poll_feed(
    client: Any,
    feed: Feed,
    state: FeedState,
    settings: Settings,
    limiter: HostLimiter,
    now: datetime,
) -> PollResult:
    """Poll one feed with conditional GET; never raises for the feed's own faults."""
    headers = {"Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    state.last_polled_at = now.isoformat()
    try:
        response = await http_get(client, feed.url, settings, limiter, headers)
        state.last_status_code = response.status_code
        if response.status_code == 304:
            return _succeeded(feed, state, now, PollStatus.NOT_MODIFIED, [], None, 0)
        if response.status_code >= 400:
            raise FetchError(feed.url, f"http_{response.status_code}", transient=True)
        if response.truncated:
            raise FetchError(feed.url, "too_large", f"feed exceeds {settings.fetch_max_bytes} bytes")
        # Parsing is CPU work; in a thread it does not stall the other feeds' downloads.
        parsed = await asyncio.to_thread(parse_feed, feed, response.body, response.final_url, response.headers)
        if parsed.bozo and not parsed.entries and not parsed.without_link:
            raise FetchError(feed.url, "malformed_feed", parsed.bozo)
        state.etag = response.headers.get("etag")
        state.last_modified = response.headers.get("last-modified")
        result = _succeeded(feed, state, now, PollStatus.OK, parsed.entries, parsed.bozo, len(response.body))
        result.without_link = state.without_link_last_poll = parsed.without_link
        return result
    except FetchError as exc:
        state.consecutive_errors += 1
        state.last_status = "failed"
        state.last_error = str(exc)
        state.healthy = False
        backoff = min(BASE_BACKOFF * 2 ** (state.consecutive_errors - 1), MAX_BACKOFF)
        state.next_poll_at = (now + max(backoff, timedelta(minutes=feed.interval_minutes))).isoformat()
        return PollResult(feed, PollStatus.FAILED, state, error=str(exc))


def _succeeded(
    feed: Feed,
    state: FeedState,
    now: datetime,
    status: PollStatus,
    entries: list[FeedEntry],
    bozo: str | None,
    size: int,
) -> PollResult:
    state.consecutive_errors = 0
    state.last_status = status.value
    state.last_success_at = now.isoformat()
    state.first_success_at = state.first_success_at or state.last_success_at
    state.last_error = bozo
    state.bozo = bool(bozo)
    state.healthy = True
    state.entries_last_poll = len(entries)
    state.next_poll_at = (now + timedelta(minutes=feed.interval_minutes)).isoformat()
    return PollResult(feed, status, state, entries=entries, bytes=size)


async def poll_all(
    feeds: list[Feed],
    states: dict[str, FeedState],
    settings: Settings,
    now: datetime,
    *,
    force: bool = False,
) -> list[PollResult]:
    """Poll every due feed (all feeds with `force`) concurrently, per-host bounded."""
    limiter = HostLimiter(settings.fetch_max_concurrency, settings.fetch_per_host_concurrency)
    due = [f for f in feeds if force or states[f.name].due(now)]
    due_names = {f.name for f in due}
    skipped = [PollResult(f, PollStatus.SKIPPED, states[f.name]) for f in feeds if f.name not in due_names]
    async with make_client(settings) as client:
        results = await asyncio.gather(*(poll_feed(client, f, states[f.name], settings, limiter, now) for f in due))
    return [*results, *skipped]


def feed_health(
    es: Elasticsearch,
    indices: Indices,
    feeds: list[Feed],
    now: datetime,
    stale_after: timedelta = timedelta(days=7),
) -> dict[str, list[str]]:
    """Feeds failing now, and feeds that answer but brought nothing new for `stale_after`."""
    states = load_states(es, indices, feeds)
    failing = sorted(f"{s.name}: {s.last_error}" for s in states.values() if s.consecutive_errors > 0)
    cutoff = now - stale_after
    # A feed is judged from its last new entry, or, before it ever had one, from its first answer.
    stale = sorted(
        s.name
        for s in states.values()
        if s.consecutive_errors == 0
        and (s.last_new_entry_at or s.first_success_at)
        and datetime.fromisoformat(s.last_new_entry_at or s.first_success_at or "") < cutoff
    )
    return {"failing": failing, "stale": stale}
