"""Sitemaps as sources: a sitemap, a sitemap index, or a Google News sitemap.

A sitemap names article URLs and, in Google's news extension, each article's
title and publication date; an index names further sitemaps, which the poll
fetches in the same run (feeds.poll_feed). The XML goes through the same
charset and entity checks as feeds (pipeline.feedxml) and is read by libxml2
with no network, no DTD and no entity expansion.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from pipeline.dates import parse_date, zone_for
from pipeline.feedxml import EntityBomb, prepare
from pipeline.fetch import FetchError, FetchReason
from pipeline.langtags import canonical_language
from pipeline.models import Feed, ParsedFeed
from pipeline.sourceentries import EntryCollector, entry_zone

GZIP_MAGIC = b"\x1f\x8b"
_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, recover=True, remove_comments=True
)


@dataclass(frozen=True)
class ChildSitemap:
    url: str
    lastmod: datetime | None


def parse_sitemap(
    feed: Feed, body: bytes, url: str | None = None, headers: Mapping[str, str] | None = None, max_bytes: int = 0
) -> ParsedFeed:
    """The article URLs of a sitemap, or (in `children`) the sitemaps an index names, newest first.

    Raises:
        FetchError: `malformed_sitemap` when the document is neither a urlset nor a sitemapindex,
            `xml_entity_bomb` as for feeds, `too_large` when a gzipped sitemap inflates past `max_bytes`.
    """
    lower = {k.lower(): v for k, v in (headers or {}).items()}
    if body.startswith(GZIP_MAGIC):  # sitemap.xml.gz served as a file, not as Content-Encoding
        body = _gunzip(feed, body, max_bytes)
    try:
        doc = prepare(body, url or feed.url, lower)
    except EntityBomb as exc:
        raise FetchError(feed.url, FetchReason.XML_ENTITY_BOMB, f"sitemap {feed.name}: {exc}") from None
    root = etree.fromstring(doc.body, _PARSER) if doc.body.strip() else None
    kind = etree.QName(root).localname if root is not None else ""
    if kind not in ("urlset", "sitemapindex"):
        raise FetchError(
            feed.url,
            FetchReason.MALFORMED_SITEMAP,
            f"sitemap {feed.name}: root is <{kind or 'nothing'}>, not <urlset> or <sitemapindex>",
        )
    zone = zone_for(feed.language, feed.timezone or None)
    if kind == "sitemapindex":
        children = [
            ChildSitemap(loc, parse_date(_child_text(node, "lastmod"), zone))
            for node in _children(root, "sitemap")
            if (loc := _child_text(node, "loc"))
        ]
        # Newest first; one without a date is taken to be current (news sitemaps rarely carry one).
        children.sort(key=lambda c: c.lastmod.timestamp() if c.lastmod else float("inf"), reverse=True)
        return ParsedFeed("", [], 0, None, doc.charset, feed.language, tuple(c.url for c in children))
    collected = EntryCollector(feed, feed.language)
    for node in _children(root, "url"):
        news = next(_children(node, "news"), None)
        published_text = _child_text(news, "publication_date") if news is not None else ""
        # A news sitemap may name each article's language where feeds.yaml does not.
        language = feed.language or canonical_language(_news_language(news)) or ""
        item_zone, item_timezone = entry_zone(feed, language)
        collected.add(
            _child_text(node, "loc"),
            _child_text(news, "title") if news is not None else "",
            parse_date(published_text or _child_text(node, "lastmod"), item_zone),
            language=language,
            timezone=item_timezone,
        )
    return ParsedFeed("", collected.entries, collected.without_link, None, doc.charset, feed.language)


def _gunzip(feed: Feed, body: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        out = inflater.decompress(body, max_bytes + 1 if max_bytes else 0)
    except zlib.error as exc:
        raise FetchError(feed.url, FetchReason.BAD_ENCODING, f"sitemap {feed.name}: {exc}") from None
    if max_bytes and len(out) > max_bytes:
        raise FetchError(feed.url, FetchReason.TOO_LARGE, f"sitemap {feed.name} inflates past {max_bytes} bytes")
    return out


def _children(node: etree._Element, name: str) -> Iterator[etree._Element]:
    """Child elements by local name, whatever namespace (or none) the site used."""
    return (c for c in node if isinstance(c.tag, str) and etree.QName(c).localname == name)


def _child_text(node: etree._Element | None, name: str) -> str:
    if node is None:
        return ""
    child = next(_children(node, name), None)
    return (child.text or "").strip() if child is not None else ""


def _news_language(news: etree._Element | None) -> str:
    publication = next(_children(news, "publication"), None) if news is not None else None
    return _child_text(publication, "language")
