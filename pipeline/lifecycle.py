"""One entry's life, from claim to done: claim → fetch → build → index → mark.

The stages overlap: a fetching thread claims entries and downloads their pages,
the worker pool builds the ones already fetched, this thread keeps the pool fed,
and an indexing thread indexes and marks what was built (when this thread did it,
the workers ran out of pages while it waited on the node). At most
NEWSMON_PROCESS_CHUNK pages are alive at once (being fetched, or fetched and not
yet built), so memory depends on that window, not on the backlog. Every claimed
entry ends with exactly one `Outcome`, counted once.
"""

from __future__ import annotations

import asyncio
import logging
import queue as queues
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import httpx
from elasticsearch import Elasticsearch

from pipeline import entries as queue
from pipeline import storymerge
from pipeline.config import Settings
from pipeline.entries import Claim, EntryError, EntryState, ErrorKind, Mark
from pipeline.es import Indices
from pipeline.fetch import FetchError, HostLimiter, fetch_page, make_client
from pipeline.index import bulk_index
from pipeline.logs import log_stage
from pipeline.models import Extraction, NotTried
from pipeline.process import Built, Document, Job, JobFeed
from pipeline.remotebuilder import Builder, open_builder
from pipeline.storyindex import RunStories

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (done, total)
FLUSH_S = 2.0  # built documents wait at most this long for their bulk request (each costs ~8 requests)
CLAIMED_WINDOWS = 2  # entries claimed at once, in windows (NEWSMON_PROCESS_CHUNK)
BATCHES_AHEAD = 2  # batches built but not yet indexed, at most: memory stays bounded when the node is slow


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
    """Take every open entry to an outcome; returns the run's counts."""
    started = now or datetime.now(UTC)
    tally = Tally(Counter(), Counter())
    run = _Run(settings, es, indices, started)
    claims, any_open = run.claim(CLAIMED_WINDOWS * settings.process_chunk)
    merged = storymerge.resume(es, indices)  # merges an earlier run left half done
    if any_open:
        total = queue.open_count(es, indices, started) + len(claims)
        with open_builder(settings) as builder:
            builder.start()  # workers warm up while the first pages download (a warm service's already have)
            fetcher = _Fetcher(run, claims)
            fetcher.start()
            try:
                _build_and_index(run, builder, fetcher.feed, tally, progress, total)
            finally:
                fetcher.stop()
        es.indices.refresh(index=[indices.articles, indices.entries])
        merged += len(storymerge.converge(es, indices, run.stories))  # a story another run started meanwhile
    steps = tally.steps
    log_stage("fetch", {k: steps[k] for k in ("queued", "fetched", "fetch_failed")})
    log_stage("extract", {k: steps[k] for k in ("extracted", "fallback", "failed")})
    log_stage("index", {"indexed": steps["indexed"], "stories_merged": merged, **tally.outcome_counts()})
    return tally.as_counts()


class _Window:
    """Pages alive at once (being fetched, or not yet built): the bound on the run's memory."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._closed = False
        self._changed = threading.Condition()

    def release(self, count: int = 1) -> None:
        with self._changed:
            self._free += count
            self._changed.notify_all()

    def take_free(self, at_least: int) -> int:
        """Wait until `at_least` places are free (or all, when fewer are held), hold them all; 0 once closed."""
        with self._changed:
            self._changed.wait_for(lambda: self._closed or self._free >= min(at_least, self.size))
            if self._closed:
                return 0
            taken, self._free = self._free, 0
            return taken

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()


@dataclass
class _Held:
    """A claimed entry and the outcome it is heading for."""

    claim: Claim
    outcome: Outcome
    error: str | None = None
    kind: ErrorKind | None = None  # the code of `error`
    fetch_step: str | None = None  # "fetched" or "fetch_failed"; None when no fetch was tried


class _Run:
    """What the fetching thread and the indexing thread share."""

    def __init__(self, settings: Settings, es: Elasticsearch, indices: Indices, started: datetime) -> None:
        self.settings, self.es, self.indices, self.started = settings, es, indices, started
        self.lease = timedelta(seconds=settings.claim_lease_seconds)
        self.window = _Window(settings.process_chunk)
        self.held: dict[str, _Held] = {}  # by article id; written by the fetcher before its job is fed
        self.stories = RunStories()  # the run's stories so far; the articles index is refreshed at the end

    def claim(self, size: int) -> tuple[list[Claim], bool]:
        return queue.claim(self.es, self.indices, size, self.started, self.lease, datetime.now(UTC))


class _Fetcher:
    """Claims entries as the window frees and feeds each fetched page to the builder, on its own thread."""

    def __init__(self, run: _Run, first: list[Claim]) -> None:
        self.run = run
        self.feed = JobFeed()
        self._first = first
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="fetch-pages", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop claiming (the builder is done or failed); re-raise what stopped the fetcher, if anything."""
        self.run.window.close()
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        try:
            asyncio.run(self._fetch_all())
        except BaseException as exc:  # handed to the indexing thread, which raises it
            self._error = exc
        finally:
            self.feed.close()

    async def _fetch_all(self) -> None:
        run, settings = self.run, self.run.settings
        limiter = HostLimiter(settings.fetch_max_concurrency, settings.fetch_per_host_concurrency)
        fetching: set[asyncio.Task[None]] = set()
        # Claimed, not yet fetched: each claim is a search and a refreshed write, so entries are claimed
        # CLAIMED_WINDOWS windows at a time; one waiting here holds its lease, not a page.
        claimed = deque(self._first)
        any_open = True
        async with make_client(settings) as client:
            while claimed or any_open:
                # With claims at hand every free place takes one; a claim waits for half the window.
                at_least = 1 if claimed else max(1, run.window.size // 2)
                free = await asyncio.to_thread(run.window.take_free, at_least)
                if not free:
                    break
                if not claimed:
                    more, any_open = await asyncio.to_thread(run.claim, max(free, CLAIMED_WINDOWS * run.window.size))
                    claimed.extend(more)
                taken = [claimed.popleft() for _ in range(min(free, len(claimed)))]
                run.window.release(free - len(taken))
                for held in taken:
                    if held.attempt > settings.entry_max_attempts:
                        self._quarantine(held)
                    else:
                        task = asyncio.create_task(self._fetch(client, limiter, held))
                        fetching.add(task)
                        task.add_done_callback(self._fetched)
            await asyncio.gather(*fetching)

    def _fetched(self, task: asyncio.Task[None]) -> None:
        # A bug in fetching would leave its place in the window taken for good: stop claiming instead.
        if not task.cancelled() and task.exception() is not None:
            self.run.window.close()

    def _quarantine(self, held: Claim) -> None:
        # Earlier attempts never came back (the run itself crashed or was killed on it).
        attempts = held.attempt - 1
        reason = f"quarantined after {attempts} unfinished attempts"
        log.warning("entry %s %s", held.entry.url, reason)
        self.run.held[held.entry.article_id] = _Held(held, Outcome.QUARANTINED, reason, EntryError.UNFINISHED)
        job = Job(held.entry, None, fetch_error=NotTried.QUARANTINED.value, status=Extraction.FAILED, attempts=attempts)
        self.feed.put(job)

    async def _fetch(self, client: httpx.AsyncClient, limiter: HostLimiter, held: Claim) -> None:
        entry, settings = held.entry, self.run.settings
        try:
            page = await fetch_page(client, entry, settings, limiter)
        except FetchError as error:
            self.run.held[entry.article_id] = _Held(
                held, _after_fetch_error(error, held, settings), str(error), error.reason, "fetch_failed"
            )
            self.feed.put(Job(entry, None, fetch_error=error.label))
        else:
            self.run.held[entry.article_id] = _Held(held, Outcome.INDEXED, fetch_step="fetched")
            self.feed.put(Job(entry, page))


def _build_and_index(
    run: _Run, builder: Builder, feed: JobFeed, tally: Tally, progress: Progress | None, total: int
) -> None:
    """Hand what the pool builds to the indexer in batches; it marks each entry once its article is in."""
    batch: list[Document] = []
    finished: list[_Held] = []  # built since the last flush, waiting to be marked
    last_flush = time.monotonic()
    with _Indexer(run, tally) as indexer:
        for built in builder.build(feed):
            run.window.release()
            held = run.held.pop(built.job.entry.article_id)
            tally.steps["queued"] += 1
            if held.fetch_step:
                tally.steps[held.fetch_step] += 1
            if built.failure:
                held.outcome, held.error = _after_build_failure(built, held.claim, run.settings)
                held.kind = EntryError.of_build(built.failure)
            if built.document:
                tally.steps[_EXTRACTION_KEY[Extraction(built.document[1]["extraction"])]] += 1
                batch.append(built.document)
            finished.append(held)
            if len(batch) >= run.settings.bulk_size or time.monotonic() - last_flush >= FLUSH_S:
                indexer.put(batch, finished)
                batch, finished = [], []
                last_flush = time.monotonic()
            if progress:
                progress(tally.steps["queued"], max(total, tally.steps["queued"]))
        indexer.put(batch, finished)


class _Indexer:
    """Indexes and marks batches in order on its own thread; its counts join the run's tally at the end.

    A batch that comes after a failed one is not indexed: its entries stay claimed, and a later
    run takes them once the lease ends, as after a crash.
    """

    _END = None

    def __init__(self, run: _Run, tally: Tally) -> None:
        self.run, self.tally = run, tally
        self._own = Tally(Counter(), Counter())  # written by the indexing thread only
        self._batches: queues.Queue[tuple[list[Document], list[_Held]] | None] = queues.Queue(BATCHES_AHEAD)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="index-articles", daemon=True)

    def __enter__(self) -> _Indexer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._batches.put(self._END)
        self._thread.join()
        self.tally.steps.update(self._own.steps)
        self.tally.outcomes.update(self._own.outcomes)
        if exc is None and self._error is not None:
            raise self._error

    def put(self, batch: list[Document], finished: list[_Held]) -> None:
        if self._error is not None:
            raise self._error
        if batch or finished:
            self._batches.put((batch, finished))

    def _main(self) -> None:
        while (item := self._batches.get()) is not self._END:
            if self._error is None:
                try:
                    _flush(self.run, *item, self._own)
                except BaseException as exc:  # raised in the building thread, by put or at the end
                    self._error = exc


def _flush(run: _Run, batch: list[Document], finished: list[_Held], tally: Tally) -> None:
    """Index the batch (the next flush finds its stories in run.stories, unrefreshed), then mark its entries."""
    if batch:
        result = bulk_index(run.es, run.indices, batch, run.settings.bulk_size, run.stories)
        tally.steps["indexed"] += result.indexed
        for held in finished:
            if held.claim.entry.article_id in result.rejected:
                held.outcome, held.error = Outcome.REJECTED, result.rejected[held.claim.entry.article_id]
                held.kind = EntryError.REJECTED
    if finished:
        marks = {h.claim.entry.article_id: (h.claim, Mark(END_STATE[h.outcome], h.error, h.kind)) for h in finished}
        queue.mark(run.es, run.indices, marks, datetime.now(UTC))
        tally.outcomes.update(h.outcome for h in finished)


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
