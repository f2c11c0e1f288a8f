"""`newsmon feeds discover URL`: the feeds and sitemaps a site advertises, as feeds.yaml entries.

Candidates come from the page's `<link rel="alternate">` tags, the `Sitemap:` lines of
the site's robots.txt, and a few common paths. Each is fetched (with the pipeline's
own guarded client) and read with the parser of its kind, so only sources that
parse are offered, each with how many entries it holds now. When the site
offers none, the page itself is offered as a `listing` if it has article links.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import lxml.html
from lxml import etree

from pipeline.config import Settings
from pipeline.feeds import parse_source
from pipeline.fetch import FetchError, FetchReason, HostLimiter, decode_html, http_get, make_client
from pipeline.models import Feed, SourceKind
from pipeline.urls import UrlError, canonical_url

FEED_TYPES = {"application/rss+xml", "application/atom+xml", "application/rdf+xml", "application/feed+json"}
COMMON_PATHS = {
    SourceKind.FEED: ("/feed", "/rss", "/rss.xml", "/feed.xml", "/atom.xml", "/index.xml"),
    SourceKind.SITEMAP: ("/sitemap.xml", "/sitemap_index.xml", "/news-sitemap.xml", "/sitemap-news.xml"),
}
_SITEMAP_LINE = re.compile(r"^\s*site-?map\s*:\s*(\S+)", re.IGNORECASE | re.MULTILINE)
_NAME_JUNK = re.compile(r"[^a-z0-9]+")
MIN_LISTING_LINKS = 3


@dataclass(frozen=True)
class Found:
    """A source the site offers, checked by fetching and parsing it."""

    kind: SourceKind
    url: str
    how: str  # where it was advertised: link rel=alternate, robots.txt, common path, the page itself
    entries: int
    language: str
    title: str = ""

    def yaml(self) -> str:
        """The entry for feeds.yaml, ready to paste under `feeds:`."""
        lines = [f"  - name: {source_name(self.url)}", f"    url: {self.url}"]
        if self.kind is not SourceKind.FEED:
            lines.append(f"    kind: {self.kind.value}")
        if self.language:
            lines.append(f"    language: {self.language}")
        note = f"{self.entries} entries now; from {self.how}" + (f"; {self.title}" if self.title else "")
        return "\n".join([*lines, f"    # {note}"])


@dataclass(frozen=True)
class Discovery:
    found: list[Found]
    rejected: list[str]  # candidates that did not fetch or parse, with why


def source_name(url: str) -> str:
    """A feeds.yaml name from a URL: host without www, then the path, in kebab case."""
    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.")
    path = re.sub(r"\.(xml|rss|atom|html?|php)$", "", parts.path)
    return _NAME_JUNK.sub("-", f"{host} {path}".lower()).strip("-")[:80] or "source"


def discover(url: str, settings: Settings) -> Discovery:
    """The sources the site at `url` offers.

    Raises:
        FetchError: the page itself cannot be fetched.
    """
    return asyncio.run(_discover(canonical_url(url), settings))


async def _discover(url: str, settings: Settings) -> Discovery:
    limiter = HostLimiter(settings.fetch_max_concurrency, settings.fetch_per_host_concurrency)
    async with make_client(settings) as client:
        page = await http_get(client, url, settings, limiter)
        if page.status_code >= 400:
            raise FetchError(url, FetchReason.HTTP_STATUS, "the page to discover from", status=page.status_code)
        html, _ = decode_html(page.body, page.headers.get("content-type", ""))
        candidates = [(SourceKind.FEED, u, "link rel=alternate") for u in _alternates(html, page.final_url)]
        root = f"{urlsplit(page.final_url).scheme}://{urlsplit(page.final_url).netloc}"
        robots = await _get_text(client, urljoin(root, "/robots.txt"), settings, limiter)
        candidates += [(SourceKind.SITEMAP, u, "robots.txt") for u in _SITEMAP_LINE.findall(robots)]
        candidates += [(kind, urljoin(root, p), "a common path") for kind, paths in COMMON_PATHS.items() for p in paths]
        found: list[Found] = []
        rejected: list[str] = []
        seen: set[str] = set()
        for kind, candidate, how in candidates:
            try:
                key = canonical_url(candidate)
            except UrlError:
                rejected.append(f"{candidate}: not an http(s) URL ({how})")
                continue
            if key in seen:
                continue
            seen.add(key)
            result = await _check(client, kind, candidate, how, settings, limiter)
            if isinstance(result, Found):
                found.append(result)
            elif how != "a common path":  # a common path that is not there is no news
                rejected.append(f"{candidate}: {result} ({how})")
        if not found:
            listing = _as_listing(url, page.body, dict(page.headers), page.final_url)
            if listing:
                found.append(listing)
        return Discovery(found, rejected)


def _alternates(html: str, base: str) -> list[str]:
    try:
        root = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return []
    return [
        urljoin(base, link.get("href", "").strip())
        for link in root.iter("link")
        if "alternate" in (link.get("rel") or "").lower().split()
        and (link.get("type") or "").lower().strip() in FEED_TYPES
        and link.get("href")
    ]


async def _get_text(client: object, url: str, settings: Settings, limiter: HostLimiter) -> str:
    try:
        response = await http_get(client, url, settings, limiter)  # type: ignore[arg-type]
    except FetchError:
        return ""
    return response.body.decode("utf-8", "replace") if response.status_code == 200 else ""


async def _check(
    client: object, kind: SourceKind, url: str, how: str, settings: Settings, limiter: HostLimiter
) -> Found | str:
    """The candidate as a Found if it fetches and parses as its kind, else why not."""
    try:
        response = await http_get(client, url, settings, limiter)  # type: ignore[arg-type]
    except FetchError as exc:
        return exc.label
    if response.status_code != 200:
        return f"http_{response.status_code}"
    probe = Feed(source_name(url), url, "", 0, "", kind)
    try:
        parsed = parse_source(probe, response.body, response.final_url, response.headers, settings.fetch_max_bytes)
    except FetchError as exc:
        return exc.label
    if not parsed.entries and not parsed.children:
        return "no entries" + (f" ({parsed.bozo})" if parsed.bozo else "")
    count = len(parsed.entries) or len(parsed.children)
    return Found(kind, url, how, count, parsed.language, parsed.title[:80])


def _as_listing(url: str, body: bytes, headers: dict[str, str], final_url: str) -> Found | None:
    probe = Feed(source_name(url), url, "", 0, "", SourceKind.LISTING)
    parsed = parse_source(probe, body, final_url, headers)
    if len(parsed.entries) < MIN_LISTING_LINKS:
        return None
    return Found(SourceKind.LISTING, url, "the page itself (no feed or sitemap found)", len(parsed.entries), "")
