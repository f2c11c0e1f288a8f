"""The warm extraction pool: runs one after another share it; one that dies, breaks or is busy loses nothing.

Real Chinese news pages (tests/data/pages/zh-dates) are served on loopback; runs are real
`newsmon run --once` processes, or process_entries in this process where a run must be
interrupted at an exact point.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from elasticsearch import Elasticsearch

from pipeline.config import PROJECT_ROOT, Settings, load_settings
from pipeline.es import Indices
from pipeline.feeds import load_feeds
from pipeline.lifecycle import process_entries
from pipeline.run import poll_stage
from pipeline.urls import canonical_url
from pipeline.warmpool import socket_path, stop
from tests import faults
from tests.datepages import chinese_pages
from tests.pages import article_html, feed_docs, rss, write_feeds
from tests.servers import FeedServer

FAULTS = Path(__file__).parent / "faultinject"
GONE_WITHIN_S = 60.0


def service(settings: Settings) -> psutil.Process | None:
    """The warm pool's service process for these settings, if one runs."""
    path = str(socket_path(settings))
    for process in psutil.process_iter(["cmdline"]):
        if path in (process.info["cmdline"] or []):
            return process
    return None


def pool_pids(process: psutil.Process) -> set[int]:
    return {p.pid for p in process.children(recursive=True)}


def wait_gone(process: psutil.Process) -> None:
    deadline = time.monotonic() + GONE_WITHIN_S
    while process.is_running() and process.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE, "the warm pool did not end"


def served_runs(settings: Settings) -> list[str]:
    log = socket_path(settings).with_suffix(".log")
    return [line for line in log.read_text(encoding="utf-8").splitlines() if "served a run" in line]


@pytest.fixture
def warm(env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """This test's runs keep a warm pool; it is ended (killed, if it must be) when the test ends."""
    monkeypatch.setenv("NEWSMON_POOL_KEEP_WARM_SECONDS", "120")
    settings = load_settings()
    yield settings
    end_pool(settings)


def end_pool(settings: Settings) -> None:
    """Kill the test's pool if it runs, and remove its files."""
    if (process := service(settings)) is not None:
        process.kill()
        wait_gone(process)
    for suffix in (".sock", ".lock", ".log"):
        socket_path(settings).with_suffix(suffix).unlink(missing_ok=True)


def serve(env: Path, server: FeedServer, count: int, start: int = 0, slow: float = 0.0) -> list[str]:
    """Real pages `start`..`start + count` behind the one feed (which lists the earlier ones too)."""
    pages = chinese_pages()[: start + count]
    links = [server.add(f"/p/{page.name}.html", page.html) for page in pages]
    for page in pages[start:]:
        server.routes[f"/p/{page.name}.html"].delay = slow
    server.add(
        "/feed.xml",
        rss(
            "t", [{"title": p.name, "link": u, "summary": f"摘要 {p.name}"} for p, u in zip(pages, links, strict=True)]
        ),
    )
    write_feeds(env, [("t", server.url("/feed.xml"), "zh-Hans")])
    return links


def poll(settings: Settings, store: tuple[Elasticsearch, Indices]) -> None:
    """Queue the feed's entries, so that a run in this process starts with them."""
    poll_stage(settings, *store, load_feeds(settings.config_file("feeds.yaml"), settings.feed_interval_minutes))


def newsmon(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # capture_output: the run returns although its warm pool lives on, holding none of its pipes.
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def indexed_once(es: Elasticsearch, indices: Indices, links: list[str]) -> dict[str, dict]:
    faults.account(faults.expected_ids(links), faults.indexed_ids(es, indices))
    docs = feed_docs(es, indices)
    assert sorted(docs) == sorted(canonical_url(link) for link in links), "each page once, none lost"
    return docs


def test_runs_one_after_another_share_one_warm_pool(
    warm: Settings, env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer
) -> None:
    es, indices = store
    serve(env, feed_server, 6)
    first = newsmon("run", "--once")
    assert first.returncode == 0, first.stderr
    pool = service(warm)
    assert pool is not None, "the run left its pool warm for the next"
    processes = pool_pids(pool)

    links = serve(env, feed_server, 6, start=6)
    second = newsmon("run", "--once")
    assert second.returncode == 0, second.stderr
    assert service(warm) == pool and pool_pids(pool) == processes, "the second run started no pool"
    assert len(served_runs(warm)) == 2
    docs = indexed_once(es, indices, links)
    assert {d["extraction"] for d in docs.values()} == {"ok"}, "built by the pool, not the feed's text"

    shown = newsmon("pool", "status")
    assert shown.returncode == 0 and f"(pid {pool.pid}), runs served: 2, idle" in shown.stdout, shown.stdout
    stopped = newsmon("pool", "stop")
    assert "asked to stop" in stopped.stdout
    wait_gone(pool)
    assert not socket_path(warm).exists()
    assert newsmon("pool", "status").returncode == 1


def test_a_warm_pool_killed_during_a_run_leaves_no_page_lost_or_doubled(
    warm: Settings,
    env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    es, indices = store
    links = serve(env, feed_server, 10, slow=0.2)
    poll(warm, store)
    killed: list[int] = []

    def kill_the_pool_after_the_first_page(done: int, total: int) -> None:
        if not killed and (pool := service(warm)) is not None:
            killed.append(pool.pid)
            pool.send_signal(signal.SIGKILL)

    with caplog.at_level(logging.WARNING), faults.trial("warm pool killed during a run"):
        counts = process_entries(warm, es, indices, progress=kill_the_pool_after_the_first_page)
    assert killed, "the run was built on the warm pool"
    assert "went away" in caplog.text
    assert counts["entries_indexed"] == 10
    docs = indexed_once(es, indices, links)
    assert {d["extraction"] for d in docs.values()} == {"ok"}
    assert not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == psutil.STATUS_ZOMBIE


def test_pool_stop_during_a_run_ends_the_pool_only_once_the_run_is_served(
    warm: Settings,
    env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    es, indices = store
    links = serve(env, feed_server, 8, slow=0.2)
    poll(warm, store)
    asked: list[psutil.Process] = []

    def stop_the_pool_after_the_first_page(done: int, total: int) -> None:
        if not asked and (pool := service(warm)) is not None:
            asked.append(pool)
            assert stop(warm)

    with caplog.at_level(logging.WARNING):
        counts = process_entries(warm, es, indices, progress=stop_the_pool_after_the_first_page)
    assert asked, "the run was built on the warm pool"
    assert "went away" not in caplog.text, "the run was served to its end"
    assert counts["entries_indexed"] == 8
    assert {d["extraction"] for d in indexed_once(es, indices, links).values()} == {"ok"}
    assert served_runs(warm) and "8 pages" in served_runs(warm)[-1]
    wait_gone(asked[0])


def test_a_page_that_crashes_a_warm_pool_worker_falls_back_and_the_pool_serves_on(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(FAULTS))  # the runs' and so the pool's: its workers crash on the page
    monkeypatch.setenv("NEWSMON_EXTRACT_TIMEOUT", "2")
    monkeypatch.setenv("NEWSMON_POOL_KEEP_WARM_SECONDS", "120")
    settings = load_settings()
    es, indices = store
    links = serve(env, feed_server, 3)
    crash = feed_server.add("/p/crash.html", article_html("崩溃", ["NEWSMON-TEST-SEGFAULT", "对日出口管制。"]))
    items = [{"title": "崩溃", "link": crash, "summary": "摘要 崩溃"}, *({"title": u, "link": u} for u in links)]
    feed_server.add("/feed.xml", rss("t", items))
    try:
        with faults.trial("a page that crashes a warm pool's worker"):
            assert newsmon("run", "--once").returncode == 0
        pool = service(settings)
        assert pool is not None, "the pool outlived its worker"
        docs = indexed_once(es, indices, [crash, *links])
        crashed = docs[canonical_url(crash)]
        assert (crashed["extraction"], crashed["extraction_reason"]) == ("failed", "worker_died")
        assert {docs[canonical_url(u)]["extraction"] for u in links} == {"ok"}

        more = serve(env, feed_server, 2, start=3)
        assert newsmon("run", "--once").returncode == 0
        assert service(settings) == pool and len(served_runs(settings)) == 2, "the same pool served the next run"
        assert {
            d["extraction"] for u, d in indexed_once(es, indices, [crash, *more]).items() if u != canonical_url(crash)
        } == {"ok"}
    finally:
        end_pool(settings)


def test_a_warm_pool_ends_by_itself_once_no_run_came_for_its_keep_warm_time(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSMON_POOL_KEEP_WARM_SECONDS", "2")
    settings = load_settings()
    serve(env, feed_server, 2)
    assert newsmon("run", "--once").returncode == 0
    pool = service(settings)
    assert pool is not None, "warm after the run"
    try:
        wait_gone(pool)
        assert not socket_path(settings).exists()
    finally:
        end_pool(settings)


def test_two_runs_at_once_on_one_warm_pool_index_each_page_once(
    warm: Settings, env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer
) -> None:
    """One run has the pool; the other, told it is busy, builds on a pool of its own."""
    es, indices = store
    links = serve(env, feed_server, 12, slow=0.3)
    poll(warm, store)
    extra = {"NEWSMON_PROCESS_CHUNK": "3"}  # many small claims, interleaved between the runs
    with faults.trial("two runs at once on one warm pool"):
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "pipeline", "run", "--once"],
                cwd=PROJECT_ROOT,
                env={**os.environ, **extra},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [faults.finished(run) for run in runs]
    docs = indexed_once(es, indices, links)
    assert {d["extraction"] for d in docs.values()} == {"ok"}
    assert 1 <= len(served_runs(warm)) <= 2, outputs
