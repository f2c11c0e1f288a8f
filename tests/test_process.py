"""The extraction pool: workers fork with the tagger and dateparser loaded, an edited watchlist still
applies, a failing caller does not wait on a blocked worker."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

import psutil
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import PROJECT_ROOT, Settings, load_settings
from pipeline.models import FeedEntry, Page
from pipeline.process import ArticleBuilder, Built, Job
from pipeline.tag import Tagger
from pipeline.urls import canonical_url
from pipeline.watchlist import load_watchlist
from tests.datepages import mediacloud_pages
from tests.pages import EXPORT_CONTROL_PARAGRAPHS, UNRELATED_PARAGRAPHS, article_html, rss, write_feeds
from tests.servers import FeedServer
from tests.test_tagging import NEW_ENTITY, NEW_ID, add_entity

WORKERS = 2
FAULTS = Path(__file__).parent / "faultinject"


# A real page (htmldate's evaluation set) on which htmldate's extensive search, run for a feed outside
# the CJK zones, reaches dateparser, whose tables for every locale take 1.4 s of CPU to build.
DATELESS = next(p for p in mediacloud_pages() if p.name == "1588107198.html")


def job(path: str, title: str, paragraphs: list[str], html: str | None = None) -> Job:
    """A fetched zh-Hans page, or (given its html) a page of a UTC feed in English."""
    url = canonical_url(f"http://127.0.0.1/{path}")
    language, zone = ("en", "UTC") if html else ("zh-Hans", "Asia/Shanghai")
    html = html or article_html(title, paragraphs)
    entry = FeedEntry("t", url, url, url, title, "", None, language, zone)
    page = Page(url, url, 200, "text/html", "utf-8", html, len(html.encode()), False, datetime.now(UTC))
    return Job(entry, page)


def _pool_workers() -> list[psutil.Process]:
    """The pool's workers: children of this process's forkserver (the resource tracker is not one)."""
    servers = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.NoSuchProcess):  # a killed forkserver not yet reaped is a zombie
            if "forkserver" in " ".join(child.cmdline()):
                servers.append(child)
    return [worker for server in servers for worker in server.children()]


def _measure(config_dir: str, cache_dir: str, conn: Connection) -> None:
    """In a fresh interpreter (so a fresh forkserver): the CPU a tagger takes to build here, then each
    worker's CPU once the pool has built an unrelated article and two copies of a date-less page."""
    settings = Settings(config_dir=Path(config_dir), cache_dir=Path(cache_dir), workers=WORKERS)
    began = time.process_time()
    Tagger(load_watchlist(settings.config_file("watchlist.yaml")), settings.config_dir, settings.cache_dir)
    tagger_cpu = time.process_time() - began
    jobs = [job("weather.html", "降温", UNRELATED_PARAGRAPHS)]
    jobs += [job(f"dateless-{i}.html", "", [], DATELESS.html) for i in range(WORKERS)]
    with ArticleBuilder(settings) as builder:
        built = list(builder.build(jobs))
        assert all(b.document is not None for b in built)
        workers = [p.cpu_times() for p in _pool_workers()]
    conn.send((tagger_cpu, [t.user + t.system for t in workers]))


def test_workers_fork_with_the_tagger_and_dateparser_already_loaded(settings: Settings) -> None:
    """Each worker used to load jieba's dictionary itself, on the path to the first article, and
    dateparser's tables inside its first date-less page."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_measure, args=(str(settings.config_dir), str(settings.cache_dir), send))
    child.start()
    assert receive.poll(300), "the measuring process sent nothing"
    tagger_cpu, workers = receive.recv()
    child.join()
    assert len(workers) == WORKERS
    assert all(cpu < tagger_cpu / 2 for cpu in workers), f"a tagger costs {tagger_cpu:.2f} s; workers {workers}"


def _entity_ids(built: list[Built]) -> list[str]:
    (one,) = built
    assert one.document is not None
    return list(one.document[1]["entity_ids"])


def test_a_pool_started_after_a_watchlist_edit_tags_by_the_edited_watchlist(env: Path) -> None:
    """The forkserver keeps the tagger it loaded first; a later pool's workers must not use it once stale."""
    story = job("defence.html", "军工企业与出口管制", [f"军工企业 {p}" for p in EXPORT_CONTROL_PARAGRAPHS])
    with ArticleBuilder(load_settings()) as builder:
        assert NEW_ID not in _entity_ids(list(builder.build([story])))
    add_entity(env, NEW_ENTITY)
    with ArticleBuilder(load_settings()) as builder:
        assert NEW_ID in _entity_ids(list(builder.build([story])))


def test_a_run_with_no_new_entries_stops_its_starting_workers(env: Path, feed_server: FeedServer) -> None:
    """`run --once` starts the pool's forkserver before it polls; a run that finds nothing leaves no worker."""
    feed_server.add("/feed.xml", rss("t", []))
    write_feeds(env, [("t", feed_server.url("/feed.xml"), "zh-Hans")])
    result = CliRunner().invoke(app, ["run", "--once"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    deadline = time.monotonic() + 10
    while (left := [p for p in _pool_workers() if p.status() != psutil.STATUS_ZOMBIE]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"workers left behind: {[p.pid for p in left]}"


# The builder's caller fails (as when the index refuses a bulk) once the good page is built, while the
# other worker is blocked on its page for good.
CALLER_FAILS = """
from datetime import UTC, datetime
from pipeline.config import load_settings
from pipeline.models import FeedEntry, Page
from pipeline.process import ArticleBuilder, Job

def job(path, text):
    url = "http://127.0.0.1:9/" + path
    html = f"<html><head><title>{path}</title></head><body><article><p>{text}</p></article></body></html>"
    page = Page(url, url, 200, "text/html", "utf-8", html, len(html), False, datetime.now(UTC))
    return Job(FeedEntry("t", url, url, url, path, "摘要", None, "zh-Hans", "Asia/Shanghai"), page)

jobs = [job("blocks", "NEWSMON-TEST-BLOCKS 中方对日出口管制"), job("good", "中方对日出口管制")]
with ArticleBuilder(load_settings()) as builder:
    for built in builder.build(jobs):
        raise RuntimeError("the index refused " + built.job.entry.url)
"""


def test_an_error_in_the_run_ends_it_without_waiting_for_a_blocked_worker(tmp_path: Path) -> None:
    """Once the run stops reading what the workers build, no limit is watched: its error must not wait on them."""
    done = subprocess.run(
        [sys.executable, "-c", CALLER_FAILS],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "PYTHONPATH": f"{FAULTS}{os.pathsep}{PROJECT_ROOT}",
            "NEWSMON_CACHE_DIR": str(tmp_path),
            "NEWSMON_WORKERS": "2",
            "NEWSMON_EXTRACT_WALL_TIMEOUT": "500",  # far beyond this test's patience
        },
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 1
    assert "RuntimeError: the index refused http://127.0.0.1:9/good" in done.stderr


def test_a_run_once_that_builds_nothing_ends_the_forkserver_it_started(env: Path, tmp_path: Path) -> None:
    """The run starts the forkserver before it knows there is work (here: before it reads feeds.yaml,
    which is broken); one that built nothing must not leave it behind, finishing its preload
    (seconds of CPU; longer with a cold cache) with the run's output pipes still open."""
    (env / "feeds.yaml").write_text("feeds: [\n", encoding="utf-8")
    run = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "--once"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "NEWSMON_CACHE_DIR": str(tmp_path / "cold-cache")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert run.wait(timeout=240) == 1, "the broken feeds.yaml is reported"
    prefix = os.environ["NEWSMON_INDEX_PREFIX"]
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            forkserver = "multiprocessing.forkserver" in " ".join(proc.info["cmdline"] or [])
            if forkserver and proc.environ().get("NEWSMON_INDEX_PREFIX") == prefix and proc.status() != "zombie":
                left.append(proc)
    for proc in left:
        proc.kill()
    assert not left, "the run's forkserver outlived it"
