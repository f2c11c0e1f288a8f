"""A run's builder on the warm pool (pipeline.warmpool), or on a pool of its own when the service cannot serve it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Protocol

from pipeline.config import Settings
from pipeline.process import POLL_S, ArticleBuilder, Built, Job, JobFeed
from pipeline.warmpool import Broken, Result, Signal, attach

log = logging.getLogger(__name__)


class Builder(Protocol):
    def __enter__(self) -> Builder: ...
    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None: ...
    def start(self) -> None: ...
    def build(self, jobs: JobFeed) -> Iterator[Built]: ...


def open_builder(settings: Settings) -> Builder:
    """The warm service's builder when there is one to have, else a pool of the run's own."""
    if settings.pool_keep_warm_seconds > 0 and (session := attach(settings)) is not None:
        return RemoteBuilder(settings, *session)
    return ArticleBuilder(settings)


class RemoteBuilder:
    """Builds on the warm service; what it had not sent back when it went away is built on a local pool."""

    def __init__(self, settings: Settings, conn: Connection, service_pid: int) -> None:
        self.settings = settings
        self.service_pid = service_pid
        self._conn = conn
        self._sent: dict[str, Job] = {}  # by article id, until its result comes back
        self._lock = threading.Lock()
        self._lost = threading.Event()

    def __enter__(self) -> RemoteBuilder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._lost.set()  # a sender still running stops
        self._conn.close()

    def start(self) -> None:
        """The service warmed up when it started."""

    def build(self, jobs: JobFeed) -> Iterator[Built]:
        sender = threading.Thread(target=self._send, args=(jobs,), name="send-jobs", daemon=True)
        sender.start()
        try:
            while (message := self._conn.recv()) is not Signal.DONE:
                if isinstance(message, Broken):
                    raise ConnectionError(f"it broke: {message.reason}")
                assert isinstance(message, Result)
                with self._lock:
                    job = self._sent.pop(message.article_id)
                yield Built(job, message.document, message.failure, message.detail)
        except (OSError, EOFError) as exc:  # ConnectionError is an OSError
            log.warning(
                "the warm extraction pool (pid %d) went away (%s): %d pages go to a pool of this run's own",
                self.service_pid,
                exc or type(exc).__name__,
                len(self._sent),
            )
            self._lost.set()
            sender.join()
            yield from self._build_locally(jobs)
            return
        sender.join()

    def _send(self, jobs: JobFeed) -> None:
        try:
            while not self._lost.is_set():
                job = jobs.take(POLL_S)
                if job is None:
                    if jobs.ended:
                        self._conn.send(None)
                        return
                    continue
                with self._lock:
                    self._sent[job.entry.article_id] = job  # before sending: a lost job is never lost here
                self._conn.send(job)
        except OSError:
            self._lost.set()

    def _build_locally(self, jobs: JobFeed) -> Iterator[Built]:
        """The unanswered jobs, then the feed's rest as it arrives, on a pool of this run's own."""
        rest = JobFeed(self._sent.values())
        self._sent = {}
        forward = threading.Thread(target=_forward, args=(jobs, rest), name="forward-jobs", daemon=True)
        forward.start()
        with ArticleBuilder(self.settings) as local:
            yield from local.build(rest)
        forward.join()


def _forward(source: JobFeed, target: JobFeed) -> None:
    while not source.ended:
        if (job := source.take(POLL_S)) is not None:
            target.put(job)
    target.close()
