"""The small records that pass between stages: feed → entry → page → article."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class PollStatus(StrEnum):
    OK = "ok"
    NOT_MODIFIED = "not_modified"
    SKIPPED = "skipped"  # backed off, or not due yet
    FAILED = "failed"


class Extraction(StrEnum):
    OK = "ok"
    FALLBACK = "fallback"
    FAILED = "failed"


class NotTried(StrEnum):
    """Why an article's page was not tried at all: its `extraction_reason` (the detail in fields of its own)."""

    QUARANTINED = "quarantined"  # earlier attempts never finished (they took the run down): `extraction_attempts`


class BuildFailure(StrEnum):
    """Why a page gave no document of its own."""

    TIMEOUT = "timeout"  # extraction outlived the CPU deadline; the worker was killed
    STALLED = "stalled"  # extraction outlived the wall-clock limit short of its CPU deadline; the worker was killed
    WORKER_DIED = "worker_died"  # the page crashed its worker twice
    ERROR = "error"  # a Python exception while building (a bug, or input no code expected)


class Origin(StrEnum):
    """How an article came into the index."""

    FEED = "feed"  # from a source of feeds.yaml, whatever its kind
    SEED = "seed"  # one of the seed articles


class PublishedFrom(StrEnum):
    """Where an article's published_at came from (pipeline.pagedate.DateSource says where on the page)."""

    PAGE = "page"
    FEED = "feed"
    FETCHED = "fetched"  # neither page nor feed gave one: the time it was fetched
    SEED = "seed"  # the seeds' own metadata


class SourceKind(StrEnum):
    """What a source in feeds.yaml publishes."""

    FEED = "feed"  # RSS or Atom
    SITEMAP = "sitemap"  # a sitemap, a sitemap index, or a Google News sitemap
    LISTING = "listing"  # an HTML page listing articles (official announcement lists)
    JSON = "json"  # a list endpoint answering JSON


@dataclass(frozen=True)
class ListingRules:
    """How a listing's article links are told apart when the built-in rules are not enough."""

    selector: str = ""  # CSS selector of the element(s) holding the article links
    url_pattern: str = ""  # regular expression an article URL must match (re.search)
    max_pages: int = 1  # pages read per poll, following the list's "next page" link


@dataclass(frozen=True)
class JsonFields:
    """Where a JSON list endpoint keeps its items and their fields (dotted paths)."""

    items: str
    url: str
    title: str = ""
    date: str = ""
    request_body: str = ""  # JSON sent as a POST, for endpoints a page's scripts query that way


@dataclass(frozen=True)
class Feed:
    name: str
    url: str
    language: str
    interval_minutes: int
    timezone: str
    kind: SourceKind = SourceKind.FEED
    listing: ListingRules = ListingRules()
    json: JsonFields | None = None
    max_urls: int = 1000  # a sitemap's newest URLs queued per poll (a plain sitemap may list 50,000)


@dataclass(frozen=True)
class FeedEntry:
    """One item of a feed, reduced to what the pipeline needs."""

    feed: str
    url: str  # canonical
    link: str  # as the feed gave it
    guid: str
    title: str
    summary: str
    published: datetime | None
    language: str
    timezone: str
    # Every feed the queue knows carried this entry (set by the queue, not by parsing).
    feeds: tuple[str, ...] = ()
    # The outlet an aggregator item names (RSS <source url="…">name</source>), e.g. on Google News.
    outlet: str = ""
    outlet_url: str = ""

    @property
    def article_id(self) -> str:
        return article_id(self.url)


@dataclass(frozen=True)
class ParsedFeed:
    """What one source document yields, whatever its kind (the parser's result converted at the boundary)."""

    title: str
    entries: list[FeedEntry]
    without_link: int  # entries with no usable link: counted, never dropped silently
    bozo: str | None  # the parser's complaint if the document was malformed
    charset: str
    language: str  # feeds.yaml's, else the feed's own tag (<language>, dc:language, Content-Language), else ""
    children: tuple[str, ...] = ()  # a sitemap index: the sitemaps it names, newest first
    next_page: str | None = None  # a listing: its "next page" link


@dataclass(frozen=True)
class Page:
    """A fetched article page, decoded to text."""

    url: str
    final_url: str
    status_code: int
    content_type: str
    charset: str
    html: str
    bytes: int
    truncated: bool
    fetched_at: datetime


@dataclass(frozen=True)
class Extracted:
    title: str
    body: str
    author: str | None
    published: datetime | None
    site_name: str | None
    status: Extraction
    reason: str | None = None
    published_has_time: bool = False  # False: the page shows the day only
    zone_assumed: bool = False  # the page gave no zone; the feed's or site's was applied
    published_guessed: bool = False  # the day came from a text search, not the page's own markup
    title_full: str = ""  # the page's title as given, site name included


@dataclass(frozen=True)
class Relevance:
    relevant: bool
    score: float
    matched_rules: list[str]
    matched_terms: list[str]
    evidence: list[str] = field(default_factory=list)  # sentences that triggered it, as written


class Verdict(StrEnum):
    """An analyst's label on an article (`newsmon label`)."""

    RELEVANT = "relevant"
    IRRELEVANT = "irrelevant"


class NameType(StrEnum):
    PERSON = "person"
    ORGANISATION = "organisation"
    PLACE = "place"
    OTHER = "other"


@dataclass(frozen=True)
class DiscoveredName:
    """A name the article gives that no watchlist entry covers."""

    name: str  # as the article writes it
    type: NameType
    count: int


# Languages whose keywords are read without jieba, whose user words are the watchlist's names.
NAME_FREE_KEYWORDS = ("en", "ja")


@dataclass(frozen=True)
class TextFacts:
    """What tagging reads from an article's text alone, whatever names the watchlist gives
    (keywords only in NAME_FREE_KEYWORDS): a retag for changed names reuses the stored ones."""

    language: str
    script: str
    keywords: list[str]
    story_marks: list[str]


@dataclass(frozen=True)
class Tags:
    language: str
    script: str
    entities: dict[str, list[str]]  # type -> canonical ids
    mentions: dict[str, int]  # canonical id -> count
    labels: dict[str, str]  # canonical id -> label an analyst reads, e.g. 高市早苗 (Takaichi Sanae)
    keywords: list[str]
    watch_terms: list[str]
    relevance: Relevance
    watchlist_version: str
    discovered: list[DiscoveredName] = field(default_factory=list)  # relevant articles only
    story_marks: list[str] = field(default_factory=list)  # numbers and dates named, as written (pipeline.stories)
    title_entities: list[str] = field(default_factory=list)  # canonical ids the title names (pipeline.stories)


@dataclass
class Article:
    """One document of the article index (before tagging)."""

    id: str
    url: str
    title: str
    body: str
    source_name: str
    source_kind: Origin
    published_at: datetime
    published_at_source: PublishedFrom
    fetched_at: datetime | None = None
    final_url: str | None = None
    summary: str = ""
    title_full: str = ""  # the page's title with the site name (`title` is without)
    author: str | None = None
    site_name: str | None = None
    domain: str | None = None  # left out: the host of final_url, else of url
    feeds: list[str] = field(default_factory=list)
    language_hint: str | None = None
    date_flags: list[str] = field(default_factory=list)
    extraction: Extraction = Extraction.OK
    extraction_reason: str | None = None  # a code: a FetchReason label, a BuildFailure, NotTried, …
    extraction_attempts: int | None = None  # unfinished attempts, of a page NotTried.QUARANTINED
    fetch: dict[str, object] = field(default_factory=dict)


def article_id(canonical_url: str) -> str:
    """Document id of an article: a re-index of the same URL is a no-op."""
    return hashlib.sha256(canonical_url.encode()).hexdigest()[:32]
