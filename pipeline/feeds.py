"""Feeds stage: the feed list, conditional polling, parsing, and per-feed state.

A feed that answers 304 costs one small request. A feed that fails backs off
exponentially; one bad feed never stops the others. Feed state lives in
Elasticsearch so that it survives restarts and analysts can chart it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import yaml
from elasticsearch import Elasticsearch, helpers

from pipeline.antibot import challenge_reason
from pipeline.config import ConfigError, Settings
from pipeline.dates import LANGUAGE_ZONES, parse_date, zone_for
from pipeline.es import CONFLICT_RETRIES, Indices
from pipeline.feedxml import EntityBomb, prepare
from pipeline.fetch import FetchError, FetchReason, HostLimiter, Response, http_get, make_client
from pipeline.googlenews import unwrapped
from pipeline.httpcache import fresh_for
from pipeline.jsonlist import parse_json_list
from pipeline.langtags import canonical_language
from pipeline.listing import SelectorError, parse_listing, selector_for
from pipeline.models import Feed, FeedEntry, JsonFields, ListingRules, ParsedFeed, PollStatus, SourceKind
from pipeline.sitemap import parse_sitemap
from pipeline.sourceentries import EntryCollector
from pipeline.urls import UrlError, canonical_url

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=24)
# A sitemap index of a news site names its news sitemap plus one sitemap per month of archive:
# only the newest few are read on each poll.
MAX_SITEMAPS_PER_POLL = 3
_ACCEPT = {
    SourceKind.FEED: "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5",
    SourceKind.SITEMAP: "application/xml, text/xml;q=0.9, */*;q=0.5",
    SourceKind.LISTING: "text/html, application/xhtml+xml;q=0.9, */*;q=0.5",
    # MOFCOM's export-control API is reported to mislabel its charset unless asked for UTF-8.
    SourceKind.JSON: "application/json;charset=utf-8, */*;q=0.5",
}
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
        # A yearly index page (MOFCOM's announcements) names its year: {year} is this year.
        url = str(item["url"]).replace("{year}", str(datetime.now(UTC).year))
        try:
            canonical_url(url)
            zone = zone_for(language, item.get("timezone")).key if language or item.get("timezone") else ""
            interval = int(item.get("interval_minutes", default_interval_minutes))
        except (UrlError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        if interval < 0:
            raise ConfigError(f"{where}: interval_minutes must be 0 (every run) or more minutes")
        kind, listing, fields = _source_options(item, where)
        max_urls = _positive(item, "max_urls", Feed.max_urls, where)
        feeds.append(Feed(str(item["name"]), url, language, interval, zone, kind, listing, fields, max_urls))
    names = [f.name for f in feeds]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{path}: duplicate feed names {dupes}")
    return feeds


_LISTING_KEYS = ("selector", "url_pattern", "max_pages")
_JSON_KEYS = ("items", "url_field", "title_field", "date_field", "request_body")
_SITEMAP_KEYS = ("max_urls",)


def _positive(item: dict[str, Any], key: str, default: int, where: str) -> int:
    try:
        value = int(item.get(key, default))
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        raise ConfigError(f"{where}: {key} must be a whole number of 1 or more, not {item.get(key)!r}")
    return value


def _source_options(item: dict[str, Any], where: str) -> tuple[SourceKind, ListingRules, JsonFields | None]:
    """The source's kind and the settings only that kind takes; a setting of another kind is an error."""
    try:
        kind = SourceKind(str(item.get("kind") or SourceKind.FEED.value))
    except ValueError:
        raise ConfigError(
            f"{where}: kind {item['kind']!r} is not one of {', '.join(k.value for k in SourceKind)}"
        ) from None
    owners = {
        **dict.fromkeys(_LISTING_KEYS, SourceKind.LISTING),
        **dict.fromkeys(_JSON_KEYS, SourceKind.JSON),
        **dict.fromkeys(_SITEMAP_KEYS, SourceKind.SITEMAP),
    }
    for key, owner in owners.items():
        if key in item and kind is not owner:
            raise ConfigError(f"{where}: {key} is a setting of kind {owner.value}, not of kind {kind.value}")
    listing = ListingRules(
        str(item.get("selector") or ""),
        str(item.get("url_pattern") or ""),
        _positive(item, "max_pages", ListingRules.max_pages, where),
    )
    try:
        re.compile(listing.url_pattern)
    except re.error as exc:
        raise ConfigError(f"{where}: url_pattern {listing.url_pattern!r} is not a regular expression: {exc}") from None
    if listing.selector:
        try:
            selector_for(listing.selector)
        except SelectorError as exc:
            raise ConfigError(f"{where}: selector {listing.selector!r} is not a CSS selector: {exc}") from None
    if kind is not SourceKind.JSON:
        return kind, listing, None
    missing = [k for k in ("items", "url_field") if not item.get(k)]
    if missing:
        raise ConfigError(f"{where}: kind json needs {' and '.join(missing)} (dotted paths into the answer)")
    body = item.get("request_body")
    if body is not None and not isinstance(body, dict):
        raise ConfigError(f"{where}: request_body must be a mapping (sent as a JSON object)")
    fields = JsonFields(
        str(item["items"]),
        str(item["url_field"]),
        str(item.get("title_field") or ""),
        str(item.get("date_field") or ""),
        json.dumps(body, ensure_ascii=False, sort_keys=True) if body else "",
    )
    return kind, listing, fields


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
    # A sitemap index: the sitemaps read on the last poll, with their own ETag and Last-Modified.
    sitemaps: list[dict[str, str | None]] = field(default_factory=list)
    # A listing: the article links its pages showed on the last poll (where following "next page" stops).
    listing_seen: list[str] = field(default_factory=list)

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
        raise FetchError(feed.url, FetchReason.XML_ENTITY_BOMB, f"feed {feed.name}: {exc}") from None
    parsed = feedparser.parse(doc.body, response_headers=doc.headers, sanitize_html=True, resolve_relative_uris=True)
    bozo = f"{type(parsed.bozo_exception).__name__}: {parsed.bozo_exception}"[:300] if parsed.bozo else None
    language = feed.language or canonical_language(str(parsed.feed.get("language") or "")) or ""
    collected = EntryCollector(feed, language)
    for item in parsed.entries:
        source = item.get("source") or {}
        collected.add(
            unwrapped(str(item.get("link") or "").strip()),
            _text(item.get("title")),
            parse_date(item.get("published") or item.get("updated"), collected.zone),
            guid=str(item.get("id") or ""),
            summary=_text(item.get("summary")),
            outlet=_text(source.get("title")),
            outlet_url=str(source.get("href") or "").strip(),
        )
    entries, without_link = collected.entries, collected.without_link
    if without_link and not entries:
        log.warning("feed %s (%s): all %d entries lack a usable link", feed.name, feed.url, without_link)
    title = _text(parsed.feed.get("title"))
    return ParsedFeed(title, entries, without_link, bozo, doc.charset, language)


def _text(value: Any) -> str:
    return re.sub(r"<[^>]+>", " ", str(value or "")).strip()[:5000]


def parse_source(
    feed: Feed, body: bytes, url: str | None = None, headers: Mapping[str, str] | None = None, max_bytes: int = 0
) -> ParsedFeed:
    """Entries of one source document, read as its kind says (every kind yields the same ParsedFeed)."""
    if feed.kind is SourceKind.SITEMAP:
        return parse_sitemap(feed, body, url, headers, max_bytes)
    if feed.kind is SourceKind.LISTING:
        return parse_listing(feed, body, url, headers)
    if feed.kind is SourceKind.JSON:
        return parse_json_list(feed, body, url, headers)
    return parse_feed(feed, body, url, headers)


async def poll_feed(
    client: Any,
    feed: Feed,
    state: FeedState,
    settings: Settings,
    limiter: HostLimiter,
    now: datetime,
) -> PollResult:
    """Poll one source with conditional GET; never raises for the source's own faults."""
    state.last_polled_at = now.isoformat()
    try:
        response = await _conditional_get(client, feed, feed.url, state.etag, state.last_modified, settings, limiter)
        state.last_status_code = response.status_code
        fresh = fresh_for(response.headers, now)
        if response.status_code == 304:
            if not state.sitemaps:
                return _succeeded(feed, state, now, PollStatus.NOT_MODIFIED, [], None, 0, fresh)
            # The index is unchanged, the sitemaps it names may not be.
            parsed = ParsedFeed("", [], 0, None, "", feed.language, tuple(s["url"] or "" for s in state.sitemaps))
        else:
            # Parsing is CPU work; in a thread it does not stall the other feeds' downloads.
            parsed = await asyncio.to_thread(
                parse_source, feed, response.body, response.final_url, response.headers, settings.fetch_max_bytes
            )
        if parsed.bozo and not parsed.entries and not parsed.without_link:
            raise FetchError(feed.url, FetchReason.MALFORMED_FEED, parsed.bozo)
        entries, without_link, size, problem = parsed.entries, parsed.without_link, len(response.body), parsed.bozo
        if parsed.children:
            entries, without_link, size, problem = await _poll_sitemaps(
                client, feed, state, settings, limiter, parsed.children
            )
            size += len(response.body)
        if feed.kind is SourceKind.SITEMAP:
            entries = _newest(feed, entries)
        if feed.kind is SourceKind.LISTING and response.status_code != 304:
            more, more_size = await _follow_pages(client, feed, state, settings, limiter, parsed)
            entries, size = entries + more, size + more_size
        if response.status_code != 304:
            state.etag = response.headers.get("etag")
            state.last_modified = response.headers.get("last-modified")
        if feed.kind is SourceKind.LISTING and not entries:
            log.warning("listing %s (%s): no article links found on the page", feed.name, feed.url)
        # An unchanged index whose sitemaps all answered 304 read nothing: not modified, as a feed would be.
        status = PollStatus.NOT_MODIFIED if response.status_code == 304 and not size else PollStatus.OK
        result = _succeeded(feed, state, now, status, entries, problem, size, fresh)
        result.without_link = state.without_link_last_poll = without_link
        return result
    except FetchError as exc:
        state.consecutive_errors += 1
        state.last_status = "failed"
        state.last_error = str(exc)
        state.healthy = False
        backoff = min(BASE_BACKOFF * 2 ** (state.consecutive_errors - 1), MAX_BACKOFF)
        state.next_poll_at = (now + max(backoff, timedelta(minutes=feed.interval_minutes))).isoformat()
        return PollResult(feed, PollStatus.FAILED, state, error=str(exc))


async def _conditional_get(
    client: Any,
    feed: Feed,
    url: str,
    etag: str | None,
    last_modified: str | None,
    settings: Settings,
    limiter: HostLimiter,
) -> Response:
    """GET with the validators of the last answer; a 304 or a usable 2xx, else FetchError naming the source."""
    headers = {"Accept": _ACCEPT[feed.kind]}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    body = feed.json.request_body.encode() if feed.json and feed.json.request_body and url == feed.url else None
    if body:
        headers["Content-Type"] = "application/json;charset=utf-8"
    response = await http_get(client, url, settings, limiter, headers, body)
    challenge = challenge_reason(response.status_code, response.body)
    if challenge:
        raise FetchError(url, FetchReason.ANTI_BOT_CHALLENGE, f"{feed.kind.value} {feed.name}: {challenge}")
    if response.status_code >= 400:
        raise FetchError(url, FetchReason.HTTP_STATUS, status=response.status_code, transient=True)
    if response.truncated:
        raise FetchError(
            url, FetchReason.TOO_LARGE, f"{feed.kind.value} {feed.name} exceeds {settings.fetch_max_bytes} bytes"
        )
    return response


def _newest(feed: Feed, entries: list[FeedEntry]) -> list[FeedEntry]:
    """A sitemap's newest `max_urls` entries (undated ones after the dated): a plain sitemap may list 50,000."""
    if len(entries) <= feed.max_urls:
        return entries
    ranked = sorted(entries, key=lambda e: e.published.timestamp() if e.published else float("-inf"), reverse=True)
    log.info("sitemap %s: %d URLs, the newest %d queued (max_urls)", feed.name, len(entries), feed.max_urls)
    return ranked[: feed.max_urls]


async def _follow_pages(
    client: Any, feed: Feed, state: FeedState, settings: Settings, limiter: HostLimiter, first: ParsedFeed
) -> tuple[list[FeedEntry], int]:
    """The listing's later pages, up to `max_pages`, while each page brings only links unseen last poll.

    A page holding a link seen last poll reaches what was read then: the pages after it are older.
    Returns (the later pages' entries, bytes read); `state.listing_seen` becomes this poll's links.
    """
    seen = set(state.listing_seen)
    entries: list[FeedEntry] = []
    size = 0
    parsed, visited = first, {feed.url}
    for _ in range(feed.listing.max_pages - 1):
        page = parsed.next_page
        if not page or page in visited or any(e.url in seen for e in parsed.entries):
            break
        visited.add(page)
        try:
            response = await _conditional_get(client, feed, page, None, None, settings, limiter)
        except FetchError as exc:  # the first page was read: its links count, the poll does not fail
            log.warning("listing %s: page %s: %s", feed.name, page, exc)
            break
        parsed = await asyncio.to_thread(parse_listing, feed, response.body, response.final_url, response.headers)
        entries += parsed.entries
        size += len(response.body)
    state.listing_seen = [e.url for e in [*first.entries, *entries]]
    return entries, size


async def _poll_sitemaps(
    client: Any, feed: Feed, state: FeedState, settings: Settings, limiter: HostLimiter, urls: tuple[str, ...]
) -> tuple[list[FeedEntry], int, int, str | None]:
    """The entries of the newest sitemaps an index names, each fetched with its own validators.

    Returns (entries, entries without a usable link, bytes read, the sitemaps that failed).
    """
    known = {s["url"]: s for s in state.sitemaps}
    entries: list[FeedEntry] = []
    without_link = size = 0
    remembered: list[dict[str, str | None]] = []
    failures: list[FetchError] = []
    for url in urls[:MAX_SITEMAPS_PER_POLL]:
        seen = known.get(url, {})
        try:
            response = await _conditional_get(
                client, feed, url, seen.get("etag"), seen.get("last_modified"), settings, limiter
            )
        except FetchError as exc:
            # One broken archive sitemap must not keep the news sitemap beside it from being read;
            # it stays remembered, so it is tried again even while the index answers 304.
            log.warning("sitemap %s: %s", feed.name, exc)
            failures.append(exc)
            remembered.append({"url": url, "etag": None, "last_modified": None})
            continue
        if response.status_code == 304:
            remembered.append({"url": url, "etag": seen.get("etag"), "last_modified": seen.get("last_modified")})
            continue
        parsed = await asyncio.to_thread(
            parse_sitemap, feed, response.body, response.final_url, response.headers, settings.fetch_max_bytes
        )
        if parsed.children:
            log.warning("sitemap %s: %s is an index too; its sitemaps are not read", feed.name, url)
        entries += parsed.entries
        without_link += parsed.without_link
        size += len(response.body)
        remembered.append(
            {"url": url, "etag": response.headers.get("etag"), "last_modified": response.headers.get("last-modified")}
        )
    if failures and len(failures) == len(remembered):
        raise failures[0]
    state.sitemaps = remembered
    return entries, without_link, size, "; ".join(str(f) for f in failures) or None


def _succeeded(
    feed: Feed,
    state: FeedState,
    now: datetime,
    status: PollStatus,
    entries: list[FeedEntry],
    bozo: str | None,
    size: int,
    fresh: timedelta,
) -> PollResult:
    """Record a good answer; the next poll waits for the feed's interval and for the response to go stale."""
    state.consecutive_errors = 0
    state.last_status = status.value
    state.last_success_at = now.isoformat()
    state.first_success_at = state.first_success_at or state.last_success_at
    state.last_error = bozo
    state.bozo = bool(bozo)
    state.healthy = True
    state.entries_last_poll = len(entries)
    state.next_poll_at = (now + max(timedelta(minutes=feed.interval_minutes), fresh)).isoformat()
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
