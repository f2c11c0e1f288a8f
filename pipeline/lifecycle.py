"""One entry's life, from claim to done: claim → fetch → build → index → mark.

Pending entries are taken a chunk at a time (NEWSMON_PROCESS_CHUNK): a chunk is
claimed, fetched, built on the worker pool, indexed and marked before the next
is claimed, so memory depends on the chunk, not on the backlog. Every claimed
entry ends the chunk with exactly one `Outcome`, counted once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from elasticsearch import Elasticsearch

from pipeline import entries as queue
from pipeline.config import Settings
from pipeline.entries import Claim, EntryState, Mark
from pipeline.es import Indices
from pipeline.fetch import FetchError, fetch_pages
from pipeline.index import bulk_index
from pipeline.logs import log_stage
from pipeline.models import Extraction, Page
from pipeline.process import ArticleBuilder, Built, Document, Job

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (done, total)


class Outcome(StrEnum):
    INDEXED = "indexed"  # the page was fetched and its article indexed
    FETCH_FAILED = "fetch_failed"  # the page cannot be had (404, not HTML, refused): the feed's text is indexed
    RETRY = "retry"  # a transient fetch failure, or a first crash or timeout: the feed's text is indexed for now
    QUARANTINED = "quarantined"  # the page crashed or hung the worker (or the run) too often: never tried again
    REJECTED = "rejected"  # Elasticsearch refused the document; it would refuse it again


END_STATE = {
    Outcome.INDEXED: EntryState.DONE,
    Outcome.FETCH_FAILED: EntryState.DONE,
    Outcome.RETRY: EntryState.RETRY,
    Outcome.QUARANTINED: EntryState.FAILED,
    Outcome.REJECTED: EntryState.FAILED,
}


@dataclass
class Tally:
    """Counts of one run: outcomes, and what fetching and extraction gave."""

    outcomes: Counter[Outcome]
    steps: Counter[str]

    def as_counts(self) -> dict[str, int]:
        return {**{k: self.steps[k] for k in STEP_KEYS}, **self.outcome_counts()}

    def outcome_counts(self) -> dict[str, int]:
        return {f"entries_{o.value}": self.outcomes[o] for o in Outcome}


STEP_KEYS = ("queued", "fetched", "fetch_failed", "extracted", "fallback", "failed", "indexed")
_EXTRACTION_KEY = {Extraction.OK: "extracted", Extraction.FALLBACK: "fallback", Extraction.FAILED: "failed"}


def process_entries(
    settings: Settings,
    es: Elasticsearch,
    indices: Indices,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Take every open entry to an outcome, a chunk at a time; returns the run's counts."""
    started = now or datetime.now(UTC)
    lease = timedelta(seconds=settings.claim_lease_seconds)
    tally = Tally(Counter(), Counter())
    claims, any_open = queue.claim(es, indices, settings.process_chunk, started, lease, datetime.now(UTC))
    if any_open:
        total = queue.open_count(es, indices, started) + len(claims)
        with ArticleBuilder(settings) as builder:
            builder.start()  # workers warm up while the first chunk downloads
            while any_open:
                if claims:
                    _run_chunk(settings, es, indices, builder, claims, tally, progress, total)
                claims, any_open = queue.claim(es, indices, settings.process_chunk, started, lease, datetime.now(UTC))
        es.indices.refresh(index=indices.articles)
    steps = tally.steps
    log_stage("fetch", {k: steps[k] for k in ("queued", "fetched", "fetch_failed")})
    log_stage("extract", {k: steps[k] for k in ("extracted", "fallback", "failed")})
    log_stage("index", {"indexed": steps["indexed"], **tally.outcome_counts()})
    return tally.as_counts()


def _run_chunk(
    settings: Settings,
    es: Elasticsearch,
    indices: Indices,
    builder: ArticleBuilder,
    claims: list[Claim],
    tally: Tally,
    progress: Progress | None,
    total: int,
) -> None:
    tally.steps["queued"] += len(claims)
    by_id = {c.entry.article_id: c for c in claims}
    outcomes: dict[str, tuple[Outcome, str | None]] = {}
    jobs: list[Job] = []
    fresh = [c for c in claims if c.attempt <= settings.entry_max_attempts]
    for held in claims:
        if held.attempt > settings.entry_max_attempts:
            # Earlier attempts never came back (the run itself crashed or was killed on it).
            reason = f"quarantined after {held.attempt - 1} unfinished attempts"
            log.warning("entry %s %s", held.entry.url, reason)
            jobs.append(Job(held.entry, None, fetch_error=reason, status=Extraction.FAILED))
            outcomes[held.entry.article_id] = (Outcome.QUARANTINED, reason)
    for entry, result in asyncio.run(fetch_pages([c.entry for c in fresh], settings)):
        if isinstance(result, Page):
            tally.steps["fetched"] += 1
            jobs.append(Job(entry, result))
            outcomes[entry.article_id] = (Outcome.INDEXED, None)
        else:
            tally.steps["fetch_failed"] += 1
            jobs.append(Job(entry, None, fetch_error=result.reason))
            outcomes[entry.article_id] = (_after_fetch_error(result, by_id[entry.article_id], settings), str(result))
    batch: list[Document] = []
    for built in builder.build(jobs):
        held = by_id[built.job.entry.article_id]
        if built.failure:
            outcomes[held.entry.article_id] = _after_build_failure(built, held, settings)
        if built.document:
            tally.steps[_EXTRACTION_KEY[Extraction(built.document[1]["extraction"])]] += 1
            batch.append(built.document)
        if len(batch) >= settings.bulk_size:
            _index(es, indices, settings, batch, outcomes, tally)
        tally.steps["built"] += 1
        if progress:
            progress(tally.steps["built"], max(total, tally.steps["built"]))
    _index(es, indices, settings, batch, outcomes, tally)
    queue.mark(
        es,
        indices,
        {doc_id: (by_id[doc_id], Mark(END_STATE[o], error)) for doc_id, (o, error) in outcomes.items()},
        datetime.now(UTC),
    )
    tally.outcomes.update(o for o, _ in outcomes.values())


def _after_fetch_error(error: FetchError, held: Claim, settings: Settings) -> Outcome:
    return Outcome.RETRY if error.transient and held.attempt < settings.entry_max_attempts else Outcome.FETCH_FAILED


def _after_build_failure(built: Built, held: Claim, settings: Settings) -> tuple[Outcome, str]:
    """A page that crashed or hung its worker is tried again by a later run, until quarantine."""
    detail = built.detail or str(built.failure)
    if held.attempt >= settings.quarantine_after or built.document is None:
        error = f"quarantined after {held.attempt} attempts: {detail}"
        log.warning("page %s %s", held.entry.link, error)
        return Outcome.QUARANTINED, error
    return Outcome.RETRY, f"{detail} (attempt {held.attempt})"


def _index(
    es: Elasticsearch,
    indices: Indices,
    settings: Settings,
    batch: list[Document],
    outcomes: dict[str, tuple[Outcome, str | None]],
    tally: Tally,
) -> None:
    if not batch:
        return
    result = bulk_index(es, indices, batch, settings.bulk_size)
    tally.steps["indexed"] += result.indexed
    for doc_id, reason in result.rejected.items():
        outcomes[doc_id] = (Outcome.REJECTED, reason)
    batch.clear()
