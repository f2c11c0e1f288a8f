"""Tagging stored articles again, for `retag`: on worker processes when there are many.

A large retag (a full one, or a name that many articles contain) is CPU-bound on tagging;
workers tag chunks while this process reads the next ones and writes the last ones' tags,
so every core works. A small one tags here: starting workers (each loads jieba's
dictionary) would cost more than it saves. Workers end with the retag, even one killed outright;
a worker that returns no tags within NEWSMON_RETAG_WALL_TIMEOUT (blocked for good: a deadlock, a
syscall) ends the retag with RetagStalled instead of hanging it, and its workers are killed.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from pipeline.document import changed_tag_fields, stored_facts, tag_fields
from pipeline.owner import end_with
from pipeline.tag import Tagger
from pipeline.watchlist import Watchlist

# (index, id, title, body, published_at, its stored tag fields when only the changed ones are written)
Stored = tuple[str, str, str, str, datetime | None, dict[str, Any] | None]
Tagged = tuple[str, str, dict[str, Any]]  # (index, id, the tag fields to write: none when nothing changed)
T = TypeVar("T")
IN_FLIGHT = 2  # chunks queued per worker, so none waits while results are written

class RetagStalled(Exception):
    """A retag worker returned no tags within the wall-clock limit."""


_worker_tagger: Tagger | None = None  # per worker process, set once by _init_worker


def _init_worker(watchlist: Watchlist, config_dir: Path, cache_dir: Path, owner: int) -> None:
    global _worker_tagger  # noqa: PLW0603 - one per worker process, set once
    end_with(owner)
    _worker_tagger = Tagger(watchlist, config_dir, cache_dir)


def _tag_chunk(chunk: list[Stored]) -> list[Tagged]:
    assert _worker_tagger is not None
    return _tag_with(_worker_tagger, chunk)


def _tag_with(tagger: Tagger, chunk: list[Stored]) -> list[Tagged]:
    tagged = []
    for index, doc_id, title, body, published, before in chunk:
        if before is None:
            tagged.append((index, doc_id, tag_fields(tagger.tag(title, body), published)))
        else:
            fields = tag_fields(tagger.tag(title, body, stored_facts(before)), published)
            tagged.append((index, doc_id, changed_tag_fields(fields, before)))
    return tagged


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of `size` items (the last may be shorter), read as they are needed."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def tag_chunks(
    tagger: Tagger, chunks: Iterable[list[Stored]], workers: int, wall_timeout: float
) -> Iterator[list[Tagged]]:
    """Each chunk's tag fields, in the chunks' order: on `workers` processes when more than one.

    At most `workers * IN_FLIGHT` chunks are held at once, so memory is bounded whatever the index holds.

    Raises:
        RetagStalled: a worker gave no chunk's tags for `wall_timeout` seconds; every worker is killed.
    """
    if workers <= 1:
        for chunk in chunks:
            yield _tag_with(tagger, chunk)
        return
    context = multiprocessing.get_context("forkserver")
    # Workers fork from a server that imported the tagger's modules once, not each on its own.
    context.set_forkserver_preload(["pipeline.tag"])
    initargs = (tagger.watchlist, tagger.config_dir, tagger.cache_dir, os.getpid())
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=initargs)
    try:
        pending: deque[Future[list[Tagged]]] = deque()
        for chunk in chunks:
            pending.append(pool.submit(_tag_chunk, chunk))
            if len(pending) >= workers * IN_FLIGHT:
                yield _within(pending.popleft(), wall_timeout)
        while pending:
            yield _within(pending.popleft(), wall_timeout)
    except BaseException:
        # Shutting down waits for the chunks in flight, and a blocked worker never finishes its chunk.
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _within(future: Future[list[Tagged]], wall_timeout: float) -> list[Tagged]:
    try:
        return future.result(timeout=wall_timeout)
    except TimeoutError:
        raise RetagStalled(
            f"a retag worker returned no tags within {wall_timeout:g}s of wall-clock time "
            "(NEWSMON_RETAG_WALL_TIMEOUT): workers stopped; the articles not yet written keep their "
            "older tags, and running the retag again completes it"
        ) from None
