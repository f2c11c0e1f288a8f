"""Section 3: polling many feeds on one loopback host, then re-polling them unchanged.

The first poll's queue writes (pipeline.entries.enqueue) can dominate it: at commit
3e568a3 poll_stage called enqueue once per feed and each call waited for an index refresh
(about 1 s per feed). A pilot poll_stage over a few feeds measures the enqueue share per
feed; when N feeds would overrun the budget with it, the first poll runs the same code
minus the enqueue (load_states → poll_all → save_states, all N feeds, measured) and the
enqueue share is projected from the pilot, labelled as such. Otherwise the first poll is
the real poll_stage over all N feeds. The re-poll is always the real poll_stage.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pipeline.entries as entries_module
from pipeline.config import PROJECT_ROOT, Settings, load_settings
from pipeline.es import connect, open_store
from pipeline.feeds import load_states, poll_all, save_states
from pipeline.models import Feed, PollStatus
from pipeline.run import configured_feeds, poll_stage
from pipeline.setup import setup_indices
from tests.bench.envscope import scoped_env
from tests.bench.feedhost import FeedHost
from tests.bench.figures import Row, Section, fmt, ratio
from tests.pages import rss, write_feeds

ENTRIES_PER_FEED = 20
PILOT_FEEDS = 8
REPOLL_TARGET_S = 10.0
REPOLL_BYTES_TARGET = 0.01


@dataclass
class FirstPoll:
    seconds: float  # measured, or measured + projected enqueue (see `projected`)
    measured_seconds: float
    bytes: int
    entries: int
    failed: int
    projected: bool


@dataclass
class Repoll:
    seconds: float
    bytes: int
    not_modified: int
    failed: int
    skipped: int


def feed_routes(count: int, host_url: Callable[[str], str]) -> dict[str, tuple[bytes, str]]:
    """`count` RSS feeds of ENTRIES_PER_FEED entries each, every link distinct."""
    published = datetime(2026, 1, 20, 8, tzinfo=UTC)
    routes = {}
    for i in range(count):
        items = [
            {
                "title": f"出口管制动态 第{i}组 第{j}条",
                "link": host_url(f"/articles/{i}/{j}.html"),
                "summary": "商务部发布公告，宣布加强两用物项出口管制。" * 3,
                "pubDate": format_datetime(published - timedelta(minutes=i * ENTRIES_PER_FEED + j)),
            }
            for j in range(ENTRIES_PER_FEED)
        ]
        routes[f"/feeds/{i}.xml"] = (rss(f"feed {i}", items).encode(), "application/rss+xml")
    return routes


@contextmanager
def timed_enqueue(totals: dict[str, float]) -> Iterator[None]:
    """Add up wall time spent in pipeline.entries.enqueue, however often poll_stage calls it."""
    real = entries_module.enqueue

    def enqueue(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            totals["seconds"] = totals.get("seconds", 0.0) + time.perf_counter() - began

    entries_module.enqueue = enqueue  # type: ignore[assignment]
    try:
        yield
    finally:
        entries_module.enqueue = real  # type: ignore[assignment]


@contextmanager
def poll_settings(config_dir: Path, es_url: str, per_host: str | None) -> Iterator[Settings]:
    """Settings as `newsmon` reads them from the environment, on a fresh index prefix."""
    with scoped_env(
        NEWSMON_CONFIG_DIR=str(config_dir),
        NEWSMON_ES_URL=es_url,
        NEWSMON_FETCH_ALLOW_PRIVATE_HOSTS="true",
        NEWSMON_INDEX_PREFIX=f"bench-{uuid.uuid4().hex[:8]}",
        NEWSMON_FETCH_PER_HOST_CONCURRENCY=per_host,  # None: the project's default
    ):
        settings = load_settings()
        setup_indices(connect(settings), settings)
        yield settings


def pilot(config_dir: Path, es_url: str, feeds: list[Feed]) -> tuple[float, float]:
    """(poll_stage seconds, enqueue seconds per polled feed) for a real poll_stage over `feeds`.

    Per feed, not per call: poll_stage may enqueue feed by feed or all feeds at once.
    """
    with poll_settings(config_dir, es_url, None) as settings:
        es, indices = open_store(settings)
        totals: dict[str, float] = {}
        began = time.perf_counter()
        with timed_enqueue(totals):
            poll_stage(settings, es, indices, feeds)
        wall = time.perf_counter() - began
    return wall, totals.get("seconds", 0.0) / len(feeds)


def first_poll(
    settings: Settings,
    host: FeedHost,
    feeds: list[Feed],
    enqueue_per_feed: float,
    budget: float,
) -> FirstPoll:
    es, indices = open_store(settings)
    sent = host.bytes_sent()
    if enqueue_per_feed * len(feeds) <= budget:
        began = time.perf_counter()
        counts = poll_stage(settings, es, indices, feeds)
        wall = time.perf_counter() - began
        return FirstPoll(wall, wall, host.bytes_sent() - sent, counts["entries"], counts["failed"], projected=False)
    now = datetime.now(UTC)
    began = time.perf_counter()
    states = load_states(es, indices, feeds)
    results = asyncio.run(poll_all(feeds, states, settings, now))
    save_states(es, indices, [r.state for r in results if r.status is not PollStatus.SKIPPED], states)
    wall = time.perf_counter() - began
    with_entries = sum(1 for r in results if r.entries)
    return FirstPoll(
        wall + enqueue_per_feed * with_entries,
        wall,
        host.bytes_sent() - sent,
        sum(len(r.entries) for r in results),
        sum(1 for r in results if r.status is PollStatus.FAILED),
        projected=True,
    )


def repoll(settings: Settings, host: FeedHost, feeds: list[Feed]) -> Repoll:
    es, indices = open_store(settings)
    sent = host.bytes_sent()
    began = time.perf_counter()
    counts = poll_stage(settings, es, indices, feeds)
    wall = time.perf_counter() - began
    return Repoll(wall, host.bytes_sent() - sent, counts["not_modified"], counts["failed"], counts["skipped"])


def measure(es_url: str, work_dir: Path, feed_count: int, budget: float) -> Section:
    section = Section("polling")
    config_dir = work_dir / "poll-config"
    shutil.copytree(PROJECT_ROOT / "config", config_dir)
    results: dict[str, tuple[FirstPoll, Repoll]] = {}
    # Entry links point at a host of their own: polling queues them and never fetches them.
    with FeedHost(feed_routes(feed_count, lambda p: f"http://news.bench.test{p}")) as host:
        write_feeds(config_dir, [(f"feed-{i}", host.url(f"/feeds/{i}.xml"), "zh-Hans") for i in range(feed_count)])
        with poll_settings(config_dir, es_url, None) as settings:
            feeds = configured_feeds(settings)
        pilot_wall, enqueue_per_feed = pilot(config_dir, es_url, feeds[:PILOT_FEEDS])
        for label, per_host in (("default", None), ("per_host_16", "16")):
            with poll_settings(config_dir, es_url, per_host) as settings:
                limit = settings.fetch_per_host_concurrency
                first = first_poll(settings, host, feeds, enqueue_per_feed, budget)
                again = repoll(settings, host, feeds)
            results[label] = (first, again)
            section.data[f"per_host_limit_{label}"] = limit
    _report(section, results, feed_count, pilot_wall, enqueue_per_feed, budget)
    return section


def _report(
    section: Section,
    results: dict[str, tuple[FirstPoll, Repoll]],
    feed_count: int,
    pilot_wall: float,
    enqueue_per_feed: float,
    budget: float,
) -> None:
    first, again = results["default"]
    wide_first, wide_again = results["per_host_16"]
    share = ratio(again.bytes, first.bytes)
    method = (
        f"projected: {fmt(first.measured_seconds, 1)} s measured (load_states → poll_all → save_states, "
        f"{feed_count} feeds) + {fmt(enqueue_per_feed, 2)} s enqueue per feed × feeds with entries "
        f"(measured in a real poll_stage over {PILOT_FEEDS} feeds; {feed_count} feeds exceed the "
        f"{budget:.0f} s budget)"
        if first.projected
        else f"measured: poll_stage over {feed_count} feeds"
    )
    default_limit = section.data["per_host_limit_default"]
    section.data.update(
        {
            "poll_feeds": feed_count,
            "poll_entries_per_feed": ENTRIES_PER_FEED,
            "first_poll_seconds": first.seconds,
            "first_poll_method": method,
            "first_poll_measured_seconds": first.measured_seconds,
            "first_poll_bytes": first.bytes,
            "first_poll_entries": first.entries,
            "first_poll_failed": first.failed,
            "poll_pilot_seconds": pilot_wall,
            "poll_pilot_feeds": PILOT_FEEDS,
            "enqueue_seconds_per_feed": enqueue_per_feed,
            "repoll_seconds": again.seconds,
            "repoll_bytes": again.bytes,
            "repoll_bytes_ratio": share,
            "repoll_not_modified": again.not_modified,
            "repoll_failed": again.failed,
            "repoll_skipped": again.skipped,
            "first_poll_seconds_per_host_16": wide_first.seconds,
            "first_poll_measured_seconds_per_host_16": wide_first.measured_seconds,
            "first_poll_failed_per_host_16": wide_first.failed,
            "repoll_seconds_per_host_16": wide_again.seconds,
            "repoll_bytes_per_host_16": wide_again.bytes,
            "repoll_not_modified_per_host_16": wide_again.not_modified,
        }
    )
    tag = " (projected)" if first.projected else ""
    how = (
        f"{fmt(first.measured_seconds, 1)} s measured without enqueue + {fmt(enqueue_per_feed, 2)} s/feed enqueue "
        f"(from a real poll_stage over {PILOT_FEEDS} feeds)"
        if first.projected
        else "measured with poll_stage"
    )
    if first.projected:
        first_rows = [
            Row(
                f"first poll, {feed_count} feeds × {ENTRIES_PER_FEED} entries, one host (s)",
                fmt(first.seconds, 1) + tag,
                how,
            ),
            Row(
                "  first poll without enqueue (s)",
                fmt(first.measured_seconds, 1),
                f"limit {default_limit} (default): {first.failed} failed; "
                f"limit 16: {fmt(wide_first.measured_seconds, 1)} s, {wide_first.failed} failed",
            ),
        ]
    else:
        first_rows = [
            Row(
                f"first poll, {feed_count} feeds × {ENTRIES_PER_FEED} entries, one host (s)",
                fmt(first.seconds, 1),
                f"poll_stage, per-host limit {default_limit} (default), {first.failed} failed; "
                f"limit 16: {fmt(wide_first.seconds, 1)} s, {wide_first.failed} failed",
            ),
        ]
    section.rows = [
        *first_rows,
        Row("first poll body bytes", f"{first.bytes:,}", f"{first.entries:,} entries"),
        Row(
            f"re-poll, unchanged (s), per-host limit {default_limit} (default)",
            fmt(again.seconds, 2),
            f"{again.not_modified} × 304, {again.failed} failed, {again.skipped} skipped",
            f"≤ {REPOLL_TARGET_S:.0f} s",
            again.seconds <= REPOLL_TARGET_S and again.not_modified == feed_count,
        ),
        Row(
            "re-poll body bytes",
            f"{again.bytes:,}",
            f"{fmt(None if share is None else share * 100, 3)} % of first poll",
            "≤ 1 %",
            share is not None and share <= REPOLL_BYTES_TARGET,
        ),
        Row(
            "re-poll, NEWSMON_FETCH_PER_HOST_CONCURRENCY=16 (s)",
            fmt(wide_again.seconds, 2),
            f"{wide_again.not_modified} × 304, {wide_again.bytes:,} bytes",
            f"≤ {REPOLL_TARGET_S:.0f} s",
            wide_again.seconds <= REPOLL_TARGET_S and wide_again.not_modified == feed_count,
        ),
    ]
