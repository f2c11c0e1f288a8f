"""`newsmon extract` and `newsmon inspect`: run the stages on files or URLs, index nothing."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline.clutter import clean_plain_text
from pipeline.config import Settings
from pipeline.extract import extract
from pipeline.fetch import FetchError, HostLimiter, decode_html, fetch_page, make_client
from pipeline.models import Extraction, FeedEntry, Page
from pipeline.tag import get_tagger
from pipeline.urls import UrlError, canonical_url

UNREADABLE = (OSError, EOFError, gzip.BadGzipFile, FetchError, UrlError)


def _read(path: str) -> bytes:
    data = Path(path).read_bytes()
    return gzip.decompress(data) if path.endswith(".gz") else data


def _html(settings: Settings, source: str) -> tuple[str, str | None]:
    """The decoded page and its URL, fetched with the pipeline's own rules (caps, refusals)."""
    if source.startswith(("http://", "https://")):
        entry = FeedEntry("cli", canonical_url(source), source, source, "", "", None, "en", "UTC")
        page = asyncio.run(_fetch(settings, entry))
        return page.html, page.final_url
    return decode_html(_read(source), "")[0], None


async def _fetch(settings: Settings, entry: FeedEntry) -> Page:
    async with make_client(settings) as client:
        return await fetch_page(client, entry, settings, HostLimiter(1, 1))


def _failed(source: str, exc: BaseException) -> dict[str, Any]:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return {
        "source": source,
        "title": "",
        "body": "",
        "published_at": None,
        "status": Extraction.FAILED,
        "reason": reason,
    }


def extract_sources(settings: Settings, sources: list[str]) -> Iterator[dict[str, Any]]:
    """One result per source, as given on the command line; a bad one fails alone."""
    for source in sources:
        try:
            html, url = _html(settings, source)
        except UNREADABLE as exc:
            yield _failed(source, exc)
            continue
        result = extract(html, url)
        yield {
            "source": source,
            "title": result.title,
            "body": result.body,
            "published_at": result.published.isoformat() if result.published else None,
            "author": result.author,
            "site_name": result.site_name,
            "status": result.status,
            "reason": result.reason,
        }


def inspect_files(settings: Settings, files: list[str]) -> Iterator[dict[str, Any]]:
    """Extraction, tags and relevance per file, as given on the command line."""
    tagger = get_tagger(settings)
    for path in files:
        try:
            raw = _read(path)
        except UNREADABLE as exc:
            yield _failed(path, exc)
            continue
        if path.removesuffix(".gz").endswith((".html", ".htm")):
            extracted = extract(decode_html(raw, "")[0], None)
            title, body, status = extracted.title, extracted.body, extracted.status
        else:
            # Plain text: the first paragraph is taken as the title, the rest as the body.
            cleaned = clean_plain_text(raw.decode("utf-8", "replace"))
            first, _, rest = cleaned.partition("\n\n")
            title, body, status = first[:200], rest or first, Extraction.OK
        tags = tagger.tag(title, body)
        yield {
            "source": path,
            "title": title,
            "status": status,
            "language": tags.language,
            "script": tags.script,
            "entities": tags.entities,
            "entity_labels": tags.labels,
            "keywords": tags.keywords,
            "watch_terms": tags.watch_terms,
            "relevance": asdict(tags.relevance),
            "discovered": [asdict(d) for d in tags.discovered],
        }
