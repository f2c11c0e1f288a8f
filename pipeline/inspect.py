"""`newsmon extract` and `newsmon inspect`: run the stages on files or URLs, index nothing.

Pages are built as the pipeline builds them, on its worker pool under its deadlines
(pipeline.process.ArticleBuilder): a hostile page fails alone, named with the limit it outlived,
instead of hanging the command.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.clutter import clean_plain_text
from pipeline.config import Settings
from pipeline.fetch import FetchError, HostLimiter, decode_html, fetch_page, make_client
from pipeline.models import BuildFailure, Extraction, FeedEntry, Page, PublishedFrom
from pipeline.process import ArticleBuilder, Built, Job
from pipeline.urls import UrlError, canonical_url
from pipeline.watchlist import load_watchlist

log = logging.getLogger(__name__)

UNREADABLE = (OSError, EOFError, gzip.BadGzipFile, FetchError, UrlError)

Result = dict[str, Any]


def _read(settings: Settings, path: str) -> tuple[bytes, bool]:
    """The file's bytes (decompressed if .gz) up to the cap a fetched page has, and whether it was cut."""
    cap = settings.fetch_max_bytes
    with gzip.open(path) if path.endswith(".gz") else Path(path).open("rb") as file:
        data = file.read(cap + 1)
    if len(data) > cap:
        log.info("file %s cut at %d bytes (NEWSMON_FETCH_MAX_BYTES)", path, cap)
    return data[:cap], len(data) > cap


def _entry(source: str, url: str, position: int, title: str = "", text: str = "") -> FeedEntry:
    # No timezone: a date without a zone takes the page's language or domain, as no feed names one.
    return FeedEntry("cli", url, source, str(position), title, text, None, "en", "")


def _page_job(settings: Settings, source: str, position: int) -> Job:
    """The page at a URL, fetched with the pipeline's own rules (caps, refusals), or in an HTML file."""
    if source.startswith(("http://", "https://")):
        entry = _entry(source, canonical_url(source), position)
        return Job(entry, asyncio.run(_fetch(settings, entry)))
    raw, truncated = _read(settings, source)
    html, charset = decode_html(raw, "")
    entry = _entry(source, Path(source).absolute().as_uri(), position)
    return Job(entry, Page(entry.url, "", 200, "text/html", charset, html, len(raw), truncated, datetime.now(UTC)))


def _inspect_job(settings: Settings, source: str, position: int) -> Job:
    if source.removesuffix(".gz").endswith((".html", ".htm")):
        return _page_job(settings, source, position)
    # Plain text: the first paragraph is taken as the title, the rest as the body.
    cleaned = clean_plain_text(_read(settings, source)[0].decode("utf-8", "replace"))
    first, _, rest = cleaned.partition("\n\n")
    entry = _entry(source, Path(source).absolute().as_uri(), position, first[:200], rest or first)
    return Job(entry, None, status=Extraction.OK)


async def _fetch(settings: Settings, entry: FeedEntry) -> Page:
    async with make_client(settings) as client:
        return await fetch_page(client, entry, settings, HostLimiter(1, 1))


def _failed(source: str, reason: str) -> Result:
    return {
        "source": source,
        "title": "",
        "body": "",
        "published_at": None,
        "status": Extraction.FAILED,
        "reason": reason,
    }


def _unreadable(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _build_failed(builder: ArticleBuilder, built: Built) -> str:
    """Why a page gave nothing, with the limit it outlived and the setting that sets it."""
    failure = built.failure
    if failure in (BuildFailure.TIMEOUT, BuildFailure.STALLED):
        return f"{failure}: extraction outlived {builder.limit(failure)}; its worker was killed"
    if failure is BuildFailure.WORKER_DIED:
        return f"{failure}: the page crashed the extracting process twice"
    return built.detail or str(failure)


def _built(
    settings: Settings, sources: list[str], job_of: Callable[[Settings, str, int], Job]
) -> Iterator[tuple[str, Result | Built]]:
    """Each source with its failure, or what the worker pool built of it, in command-line order."""
    jobs: list[Job] = []
    done: dict[int, Result | Built] = {}
    for position, source in enumerate(sources):
        try:
            jobs.append(job_of(settings, source, position))
        except UNREADABLE as exc:
            done[position] = _failed(source, _unreadable(exc))
    if not jobs:
        yield from ((source, done[position]) for position, source in enumerate(sources))
        return
    workers = min(len(jobs), settings.workers or os.cpu_count() or 1)
    with ArticleBuilder(settings.model_copy(update={"workers": workers})) as builder:
        results = builder.build(jobs)
        for position, source in enumerate(sources):
            while position not in done:
                built = next(results)  # any source's: the pool gives them as they finish
                entry = built.job.entry
                done[int(entry.guid)] = _failed(entry.link, _build_failed(builder, built)) if built.failure else built
            yield source, done.pop(position)


def extract_sources(settings: Settings, sources: list[str]) -> Iterator[Result]:
    """One result per source, as given on the command line; a bad one fails alone."""
    for source, built in _built(settings, sources, _page_job):
        if not isinstance(built, Built):
            yield built
            continue
        assert built.document is not None  # a page with a document of its own (failures are results)
        doc = built.document[1]
        from_page = doc["published_at_source"] == PublishedFrom.PAGE
        yield {
            "source": source,
            "title": doc["title"],
            "body": doc["body"],
            "published_at": doc["published_at"] if from_page else None,
            "author": doc["author"],
            "site_name": doc["source"]["site_name"],
            "status": Extraction(doc["extraction"]),
            "reason": doc["extraction_reason"],
        }


def inspect_files(settings: Settings, files: list[str]) -> Iterator[Result]:
    """Extraction, tags and relevance per file, as given on the command line."""
    load_watchlist(settings.config_file("watchlist.yaml"))  # a bad watchlist is named here, not by a dying worker
    for source, built in _built(settings, files, _inspect_job):
        if not isinstance(built, Built):
            yield built
            continue
        assert built.document is not None
        doc = built.document[1]
        yield {
            "source": source,
            "title": doc["title"],
            "status": Extraction(doc["extraction"]),
            "language": doc["language"],
            "script": doc["script"],
            "entities": {kind: ids for kind, ids in doc["entities"].items() if ids},
            "entity_labels": dict(zip(doc["entity_ids"], doc["entity_labels"], strict=True)),
            "keywords": doc["keywords"],
            "watch_terms": doc["watch_terms"],
            "relevance": doc["relevance"],
            "discovered": doc["discovered"],
        }
