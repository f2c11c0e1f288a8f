"""Extract and tag pages on every core, each page under a time limit.

Workers load the tagger once (jieba dictionary, automaton) when they start.
A page whose extraction outlives NEWSMON_EXTRACT_TIMEOUT is recorded `failed`
with the reason `timeout`; a worker that does not come back at all is killed
and replaced, and the rest of the batch goes on.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.config import Settings
from pipeline.dates import choose_published
from pipeline.document import build_document
from pipeline.extract import extract
from pipeline.models import Article, Extracted, Extraction, FeedEntry, Page
from pipeline.tag import get_tagger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One article to build: the entry, and its page or why there is none."""

    entry: FeedEntry
    page: Page | None
    fetch_error: str | None = None
    status: Extraction = Extraction.FALLBACK  # when there is no page


WORKER_START_TIMEOUT_S = 120.0
IN_FLIGHT = 4  # jobs queued per worker


class ExtractionTimeout(Exception):
    pass


def build_article(job: Job, settings: Settings, now: datetime | None = None) -> tuple[str, dict[str, Any]]:
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
        extracted = _with_time_limit(
            settings.extract_timeout,
            lambda: extract(
                page.html, page.final_url, entry.language, entry.timezone, entry.title, entry.summary, fetched_at
            ),
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
        body=extracted.body or entry.summary,
        summary=entry.summary,
        source_name=entry.feed,
        source_kind="feed",
        published_at=published,
        published_at_source=source,
        date_flags=flags,
        fetched_at=fetched_at,
        author=extracted.author,
        site_name=extracted.site_name,
        feeds=sorted({entry.feed, *entry.feeds}),
        extraction=extracted.status,
        extraction_reason=extracted.reason,
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


def _with_time_limit(seconds: float, work: Any) -> Any:
    """Run `work` under SIGALRM so a pathological page ends as `timeout`, not a hang."""

    def expire(signum: int, frame: Any) -> None:
        raise ExtractionTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return work()
    except ExtractionTimeout:
        return Extracted(
            title="", body="", author=None, published=None, site_name=None, status=Extraction.FAILED, reason="timeout"
        )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


_worker_settings: Settings | None = None


def _init_worker(settings: Settings) -> None:
    global _worker_settings  # noqa: PLW0603 - one per worker process, set once
    _worker_settings = settings
    get_tagger(settings)  # pay the dictionary load once per worker


def _run_job(job: Job) -> Outcome:
    assert _worker_settings is not None
    return _guarded(job, _worker_settings)


Outcome = tuple[str, dict[str, Any]] | str  # (id, document), or why there is none


class ArticleBuilder:
    """Builds documents on a pool of worker processes, or in-process for a few articles."""

    def __init__(self, settings: Settings, expected_jobs: int) -> None:
        self.settings = settings
        self.workers = settings.workers or os.cpu_count() or 1
        few = self.workers == 1 or expected_jobs < settings.pool_min_articles
        # In-process work is bounded by SIGALRM, which only the main thread receives.
        self.in_process = few and threading.current_thread() is threading.main_thread()
        self._pool: ProcessPoolExecutor | None = None
        self._warming: threading.Thread | None = None

    def __enter__(self) -> ArticleBuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._warming:
            self._warming.join()
        self._shutdown(kill=False)

    def start(self) -> None:
        """Start and warm the workers in the background, e.g. while pages are fetched."""
        if not self.in_process and self._pool is None:
            self._warming = threading.Thread(target=self._executor, name="warm-workers", daemon=True)
            self._warming.start()

    def build(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, Outcome]]:
        """Yield each job with its (id, document), or the reason it has none."""
        if self.in_process:
            for job in jobs:
                yield job, _guarded(job, self.settings)
            return
        if self._warming:
            self._warming.join()
            self._warming = None
        waiting = deque(jobs)
        running: dict[Future[Outcome], tuple[Job, float]] = {}
        retried: Counter[str] = Counter()
        # SIGALRM ends a slow page inside its worker; this backstop is for a worker stuck
        # in C code, where no signal handler runs. IN_FLIGHT jobs per worker are queued so
        # that workers keep busy while the caller indexes, so a job may wait that many
        # jobs' length before it starts.
        backstop = self.settings.extract_timeout * (IN_FLIGHT + 1) + 5
        while waiting or running:
            while waiting and len(running) < self.workers * IN_FLIGHT:
                job = waiting.popleft()
                running[self._executor().submit(_run_job, job)] = (job, time.monotonic())
            done, _ = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                job, _ = running.pop(future)
                try:
                    yield job, future.result()
                except BrokenProcessPool:
                    # A dying worker fails every job in flight; only a job that breaks
                    # a fresh pool too is taken to be the cause.
                    broken = True
                    retried[job.entry.url] += 1
                    if retried[job.entry.url] > 1:
                        yield job, "worker_died"
                    else:
                        waiting.append(job)
            now = time.monotonic()
            overdue = [f for f, (_, started) in running.items() if now - started > backstop]
            if broken or overdue:
                log.warning("replacing extraction workers (%d pages overdue)", len(overdue))
                self._shutdown(kill=True)
                for future in overdue:
                    yield running.pop(future)[0], "timeout"
                waiting.extendleft(job for job, _ in running.values())
                running.clear()

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            # Workers fork from a server that imported the pipeline once, not each on its own.
            context.set_forkserver_preload(["pipeline.process"])
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self.settings,),
            )
            self._warm_up(self._pool)
        return self._pool

    def _warm_up(self, pool: ProcessPoolExecutor) -> None:
        """Wait until every worker has loaded the tagger, so start-up never counts as a hung page."""
        pids: set[int] = set()
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while len(pids) < self.workers and time.monotonic() < deadline:
            pids.update(f.result() for f in [pool.submit(os.getpid) for _ in range(self.workers)])

    def _shutdown(self, *, kill: bool) -> None:
        if self._pool is None:
            return
        if kill:
            # The executor has no public way to stop a busy worker.
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.kill()
        self._pool.shutdown(wait=not kill, cancel_futures=True)
        self._pool = None


def _guarded(job: Job, settings: Settings) -> Outcome:
    # One bad page must not end the run: record why and go on.
    try:
        return build_article(job, settings)
    except Exception as exc:
        log.exception("building %s failed", job.entry.url)
        return f"error: {type(exc).__name__}"
