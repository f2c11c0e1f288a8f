"""Extract and tag pages in worker processes, each page under a hard deadline.

Workers load the tagger once (jieba dictionary, automaton) when they start, and
jieba's POS model only for their first relevant article (its deadline stops meanwhile).
Extraction never runs in the calling process: a page can hang or crash C code
(lxml, regex), which no signal handler interrupts, so the deadline is enforced
from outside by killing the worker. Each worker writes which job it started and
its CPU time then into shared memory; a job that has used more than
NEWSMON_EXTRACT_TIMEOUT seconds of CPU is killed with its worker, and its article
is built from the feed's text instead, marked `failed` with the reason. A job
that breaks a fresh pool a second time is taken to be the cause (`worker_died`),
the same way. CPU, not wall time: on a loaded machine a normal page takes many
times its CPU time in wall time, and a wall-clock deadline killed such pages and
restarted the pool (seconds of start-up each time) until the run gave up. A worker
blocked without using CPU (a syscall, a deadlock) never reaches that deadline, so a
generous wall-clock limit, NEWSMON_EXTRACT_WALL_TIMEOUT, ends it the same way (`stalled`).
Workers end when the process that started them does, even when it is killed outright.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import psutil

from pipeline.config import Settings
from pipeline.dates import choose_published
from pipeline.document import build_document
from pipeline.googlenews import outlet_domain
from pipeline.models import Article, BuildFailure, Extracted, Extraction, FeedEntry, Origin, Page
from pipeline.owner import end_with
from pipeline.poolserver import forkserver
from pipeline.tag import get_tagger

log = logging.getLogger(__name__)

WORKER_START_TIMEOUT_S = 120.0
IN_FLIGHT = 4  # jobs queued per worker, so workers keep busy while the caller indexes
POLL_S = 0.2  # how often deadlines are checked
MAX_IDLE_BREAKS = 3  # pools that may break with no page running before the run gives up


@dataclass(frozen=True)
class Job:
    """One article to build: the entry, and its page or why there is none."""

    entry: FeedEntry
    page: Page | None
    fetch_error: str | None = None
    status: Extraction = Extraction.FALLBACK  # when there is no page
    failure: BuildFailure | None = None  # set when this job stands in for a page that failed
    attempts: int | None = None  # unfinished attempts of a page quarantined before it was fetched


Document = tuple[str, dict[str, Any]]  # (id, source)


@dataclass(frozen=True)
class Failed:
    failure: BuildFailure
    detail: str


@dataclass(frozen=True)
class Built:
    """What a job gave: its document, and the failure that made it fall back to the feed's text."""

    job: Job
    document: Document | None  # None only when even the feed's text could not be built
    failure: BuildFailure | None = None
    detail: str | None = None


def build_article(job: Job, settings: Settings, now: datetime | None = None) -> Document:
    """Extract, date, tag and shape one article into its index document."""
    entry, page = job.entry, job.page
    fetched_at = page.fetched_at if page else (now or datetime.now(UTC))
    if page is None:
        extracted = Extracted(
            title=entry.title,
            body=entry.summary,
            author=None,
            published=None,
            site_name=None,
            status=job.status,
            reason=job.fetch_error,
        )
    else:
        # Imported only where pages are built: a run on the warm pool never needs trafilatura.
        from pipeline.extract import extract

        # A page read from a file (newsmon inspect) has no address: "" would read as one to htmldate.
        extracted = extract(
            page.html, page.final_url or None, entry.language, entry.timezone, entry.title, entry.summary, fetched_at
        )
    published, source, flags = choose_published(
        extracted.published,
        entry.published,
        fetched_at,
        extracted.published_has_time,
        extracted.zone_assumed,
        extracted.published_guessed,
    )
    article = Article(
        id=entry.article_id,
        url=entry.url,
        final_url=page.final_url if page else None,
        title=extracted.title or entry.title,
        title_full=extracted.title_full or extracted.title or entry.title,
        body=extracted.body or entry.summary,
        summary=entry.summary,
        source_name=entry.feed,
        source_kind=Origin.FEED,
        published_at=published,
        published_at_source=source,
        date_flags=flags,
        fetched_at=fetched_at,
        author=extracted.author,
        site_name=extracted.site_name or entry.outlet or None,
        # An aggregator's item that never reached the publisher's page is filed under its outlet.
        domain=outlet_domain(entry.outlet_url) if entry.outlet_url and page is None else None,
        feeds=sorted({entry.feed, *entry.feeds}),
        extraction=extracted.status,
        extraction_reason=extracted.reason,
        extraction_attempts=job.attempts,
        fetch={
            "status_code": page.status_code,
            "content_type": page.content_type,
            "charset": page.charset,
            "truncated": page.truncated,
            "bytes": page.bytes,
        }
        if page
        else {},
    )
    tags = get_tagger(settings).tag(article.title, article.body)
    return article.id, build_document(article, tags)


class JobFeed:
    """Jobs handed to the builder as their pages arrive (from another thread); closed when no more will come."""

    _END = None

    def __init__(self, jobs: Iterable[Job] = ()) -> None:
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._ended = False
        for job in jobs:
            self.put(job)

    @classmethod
    def of(cls, jobs: Iterable[Job]) -> JobFeed:
        feed = cls(jobs)
        feed.close()
        return feed

    def put(self, job: Job) -> None:
        self._queue.put(job)

    def close(self) -> None:
        self._queue.put(self._END)

    @property
    def ended(self) -> bool:
        return self._ended

    def take(self, timeout: float) -> Job | None:
        """The next job, or None when none came within `timeout` (0: don't wait) or the feed has ended."""
        if self._ended:
            return None
        try:
            job = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if job is self._END:
            self._ended = True
        return job


# Per worker process, set once by _init_worker.
_worker_settings: Settings | None = None
_started: Any = None  # shared doubles per worker slot: SLOT_FIELDS
_slot = 0
SLOT_FIELDS = 4  # job number (0: idle), the worker's CPU seconds when it started the job, its pid, the clock then


def _init_worker(settings: Settings, started: Any, slots: Any, owner: int) -> None:
    global _worker_settings, _started, _slot  # noqa: PLW0603 - one per worker process, set once
    end_with(owner)
    _worker_settings, _started = settings, started
    with slots.get_lock():
        _slot = slots.value
        slots.value += 1
    _started[SLOT_FIELDS * _slot + 2] = os.getpid()
    # Pay the dictionary load once per worker, outside any page's time limit.
    get_tagger(settings)


@contextlib.contextmanager
def _deadline_stopped() -> Iterator[None]:
    """The POS model loads inside the first relevant page's job: the load counts against no page's CPU deadline.

    The wall-clock limit runs on: it is generous enough for the load, and a load blocked for good needs it too.
    """
    began = SLOT_FIELDS * _slot + 1
    _started[began] = math.inf
    try:
        yield
    finally:
        _started[began] = _cpu_seconds(psutil.Process())


def _run_job(number: int, job: Job) -> Document | Failed:
    assert _worker_settings is not None
    base = SLOT_FIELDS * _slot
    _started[base + 1] = _cpu_seconds(psutil.Process())
    _started[base + 3] = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process on the machine
    _started[base] = number
    # Set on every job: an edited watchlist gives the worker a new tagger.
    get_tagger(_worker_settings).discoverer.loading_model = _deadline_stopped
    try:
        return build_article(job, _worker_settings)
    except Exception as exc:
        # One bad page must not end the run: record why and go on.
        log.exception("building %s failed", job.entry.url)
        return Failed(BuildFailure.ERROR, f"error: {type(exc).__name__}")
    finally:
        _started[base] = 0


def _cpu_seconds(process: psutil.Process) -> float:
    """User and system CPU of one process, as the kernel counts it (the same for it and its parent)."""
    times = process.cpu_times()
    return float(times.user + times.system)


class ArticleBuilder:
    """Builds documents on a warm pool of worker processes, killing any that outlive the deadline."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workers = settings.workers or os.cpu_count() or 1
        self.timeout = settings.extract_timeout
        self.wall_timeout = settings.extract_wall_timeout
        self._pool: ProcessPoolExecutor | None = None
        self._started: Any = None
        self._warming: threading.Thread | None = None
        self._closing = threading.Event()  # set on exit: a pool still warming up stops waiting for its workers
        self._ready = False  # every worker has loaded the tagger
        self._numbers = iter(range(1, 2**52))  # job numbers, exact as doubles; 0 means idle

    def __enter__(self) -> ArticleBuilder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._closing.set()
        self._join_warming()
        # Workers still loading the tagger (a run that found no work) would finish loading first; leaving
        # on an error (the index refused a bulk), the pages in flight are not waited for: no deadline is
        # watched once build() is not read, and one may be blocked for good.
        self._shutdown(kill=not self._ready or exc_type is not None)

    def _join_warming(self) -> None:
        if self._warming:
            self._warming.join()
            self._warming = None

    def start(self) -> None:
        """Start and warm the workers in the background, e.g. while pages are fetched."""
        if self._pool is None and self._warming is None:
            self._warming = threading.Thread(target=self._executor, name="warm-workers", daemon=True)
            self._warming.start()

    def build(self, jobs: Iterable[Job] | JobFeed) -> Iterator[Built]:
        """Yield what each job gave, in the order jobs finish; a JobFeed is read as its jobs arrive."""
        self._join_warming()
        feed = jobs if isinstance(jobs, JobFeed) else JobFeed.of(jobs)
        waiting: deque[Job] = deque()  # jobs to run again (after a broken pool) or to fall back
        running: dict[Future[Any], tuple[int, Job]] = {}
        broke: Counter[int] = Counter()  # per job (by id): pools that broke while it ran
        idle_breaks = 0
        while waiting or running or not feed.ended:
            self._submit(feed, waiting, running)
            if not running:
                continue
            done, _ = wait(running, timeout=POLL_S, return_when=FIRST_COMPLETED)
            broken, started = False, set()
            for future in done:
                number, job = running.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    if not broken:
                        started = self._running_numbers()
                    broken = True
                    yield from self._after_break(job, number in started, broke, waiting)
                    continue
                if isinstance(result, Failed):
                    yield from self._fallback(job, result.failure, result.detail, waiting)
                else:
                    yield Built(job, result, job.failure, job.fetch_error if job.failure else None)
            overdue = self._overdue({n for n, _ in running.values()})
            if broken and not started:
                idle_breaks += 1
                if idle_breaks > MAX_IDLE_BREAKS:  # not a page's fault: the workers cannot start
                    raise RuntimeError(f"extraction workers died {idle_breaks} times before taking any page")
            if broken or overdue:
                log.warning("replacing extraction workers (%d pages past the deadline)", len(overdue))
                self._shutdown(kill=True)
                for future, (number, job) in list(running.items()):
                    if failure := overdue.get(number):
                        del running[future]
                        limit = self.limit(failure)
                        log.warning("extraction of %s outlived %s: worker killed (%s)", job.entry.url, limit, failure)
                        yield from self._fallback(job, failure, failure.value, waiting)
                waiting.extendleft(job for _, job in running.values())
                running.clear()

    def limit(self, failure: BuildFailure) -> str:
        """The deadline a page outlived (TIMEOUT or STALLED), with the setting that sets it."""
        if failure is BuildFailure.TIMEOUT:
            return f"{self.timeout}s of CPU (NEWSMON_EXTRACT_TIMEOUT)"
        return f"{self.wall_timeout}s of wall-clock time (NEWSMON_EXTRACT_WALL_TIMEOUT)"

    def _submit(self, feed: JobFeed, waiting: deque[Job], running: dict[Future[Any], tuple[int, Job]]) -> None:
        """Keep IN_FLIGHT jobs per worker; wait for the feed only when nothing runs (else results come first)."""
        while len(running) < self.workers * IN_FLIGHT:
            job = waiting.popleft() if waiting else feed.take(0 if running else POLL_S)
            if job is None:
                return
            number = next(self._numbers)
            running[self._executor().submit(_run_job, number, job)] = (number, job)

    def _after_break(self, job: Job, had_started: bool, broke: Counter[int], waiting: deque[Job]) -> Iterator[Built]:
        """A dying worker fails every job in flight. Only a job a worker had started can be
        the cause, and only one that breaks a fresh pool too is taken to be."""
        if had_started:
            broke[id(job)] += 1
        if broke[id(job)] > 1:
            yield from self._fallback(job, BuildFailure.WORKER_DIED, "worker_died", waiting)
        else:
            waiting.appendleft(job)

    def _fallback(self, job: Job, failure: BuildFailure, detail: str, waiting: deque[Job]) -> Iterator[Built]:
        """The feed's text stands in for a page that failed; if even that fails, there is no document."""
        if job.page is None:
            yield Built(job, None, failure, detail)
        else:
            waiting.append(replace(job, page=None, fetch_error=detail, status=Extraction.FAILED, failure=failure))

    def _slots(self) -> list[tuple[int, float, int, float]]:
        """(job number, CPU seconds and clock at its start, pid) of each worker's current job; number 0 when idle."""
        if self._started is None:
            return []
        fields = [self._started[SLOT_FIELDS * slot : SLOT_FIELDS * (slot + 1)] for slot in range(self.workers)]
        return [(int(number), began, int(pid), since) for number, began, pid, since in fields]

    def _running_numbers(self) -> set[int]:
        return {number for number, _, _, _ in self._slots() if number}

    def _overdue(self, numbers: set[int]) -> dict[int, BuildFailure]:
        """Jobs whose worker has spent more than the deadline's CPU seconds on them, or the wall-clock limit."""
        overdue = {}
        now = time.monotonic()
        for number, began, pid, since in self._slots():
            if number not in numbers:
                continue
            if now - since > self.wall_timeout:
                overdue[number] = BuildFailure.STALLED
                continue
            # A worker that just died is the pool's break to handle, not a deadline.
            with contextlib.suppress(psutil.NoSuchProcess):
                if _cpu_seconds(psutil.Process(pid)) - began > self.timeout:
                    overdue[number] = BuildFailure.TIMEOUT
        return overdue

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # Workers fork from a server that imported the pipeline and built the tagger once, not each on its own.
            context = forkserver(self.settings)
            self._started = context.Array("d", SLOT_FIELDS * self.workers, lock=False)
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self.settings, self._started, context.Value("i", 0), os.getpid()),
            )
            self._warm_up(self._pool)
        return self._pool

    def _warm_up(self, pool: ProcessPoolExecutor) -> None:
        """Wait until every worker has loaded the tagger, so start-up never counts against a page."""
        pids: set[int] = set()
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while len(pids) < self.workers and time.monotonic() < deadline:
            pending = {pool.submit(os.getpid) for _ in range(self.workers)}
            while pending:
                if self._closing.is_set():
                    return
                done, pending = wait(pending, timeout=POLL_S)
                pids.update(f.result() for f in done)
        self._ready = True

    def _shutdown(self, *, kill: bool) -> None:
        if self._pool is None:
            return
        if kill:
            # The executor has no public way to stop a busy worker.
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.kill()
        self._pool.shutdown(wait=not kill, cancel_futures=True)
        self._pool = None
        self._started = None
