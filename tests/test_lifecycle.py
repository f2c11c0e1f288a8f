"""An entry from claim to done: exclusive claims, leases, poison pages, overlapping runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from pipeline import entries as queue
from pipeline.config import PROJECT_ROOT, load_settings
from pipeline.es import Indices
from pipeline.feeds import load_feeds
from pipeline.lifecycle import process_entries
from pipeline.models import article_id
from pipeline.run import poll_stage
from pipeline.urls import canonical_url
from tests import faults
from tests.pages import EXPORT_CONTROL_PARAGRAPHS, article_html, feed_docs, rss, write_feeds
from tests.servers import FeedServer

FAULTS = Path(__file__).parent / "faultinject"


def story(i: int) -> list[str]:
    return [f"({i}) {p}" for p in EXPORT_CONTROL_PARAGRAPHS]


def serve_feed(env: Path, server: FeedServer, pages: dict[str, str]) -> dict[str, str]:
    """Serve pages (path -> html) and one feed listing them; returns path -> link."""
    links = {path: server.add(path, html) for path, html in pages.items()}
    server.add("/feed.xml", rss("t", [{"title": p, "link": u, "summary": f"摘要 {p}"} for p, u in links.items()]))
    write_feeds(env, [("t", server.url("/feed.xml"), "zh-Hans")])
    return links


def entry_states(es: Elasticsearch, indices: Indices) -> dict[str, dict]:
    es.indices.refresh(index=indices.entries)
    hits = es.search(index=indices.entries, size=500)["hits"]["hits"]
    return {h["_source"]["url"]: h["_source"] for h in hits}


def failures_by_kind(es: Elasticsearch, indices: Indices) -> dict[tuple[str, str], int]:
    """Entries per (state, error_kind), as an ops chart in Kibana splits them: a terms aggregation."""
    es.indices.refresh(index=indices.entries)
    response = es.search(
        index=indices.entries,
        size=0,
        aggs={"states": {"terms": {"field": "state"}, "aggs": {"kinds": {"terms": {"field": "error_kind"}}}}},
    )
    return {
        (state["key"], kind["key"]): kind["doc_count"]
        for state in response["aggregations"]["states"]["buckets"]
        for kind in state["kinds"]["buckets"]
    }


def newsmon_run(extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "--once"],
        cwd=PROJECT_ROOT,
        env={**os.environ, **(extra_env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_runs_at_once_index_each_article_once_and_lose_nothing(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    es, indices = store
    links = serve_feed(
        env, feed_server, {f"/r/{i}.html": article_html(f"对日出口管制{i}", story(i)) for i in range(12)}
    )
    for path in links:
        feed_server.routes[path].delay = 0.3  # slow pages, so the two runs overlap for certain
    settings = load_settings()
    poll_stage(settings, es, indices, load_feeds(settings.config_file("feeds.yaml"), settings.feed_interval_minutes))
    monkeypatch.setenv("NEWSMON_PROCESS_CHUNK", "3")  # many small claims, interleaved between the runs
    with faults.trial("two runs at once"):
        runs = [newsmon_run(), newsmon_run()]
        for run in runs:
            faults.finished(run)
    faults.account(faults.expected_ids(links.values()), faults.indexed_ids(es, indices))

    docs = feed_docs(es, indices)
    assert set(docs) == {canonical_url(u) for u in links.values()}, "nothing lost"
    states = entry_states(es, indices)
    assert {s["state"] for s in states.values()} == {"done"}
    # One attempt each: no entry was taken by both runs.
    assert sorted(s["attempts"] for s in states.values()) == [1] * len(links)
    assert all(len(feed_server.hits(path)) == 1 for path in links), "each page fetched once"
    es.indices.refresh(index=indices.articles)
    assert es.count(index=indices.articles, query={"term": {"source.kind": "feed"}})["count"] == len(links)


def test_a_crashed_claim_is_taken_again_after_its_lease_and_counted(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    es, indices = store
    monkeypatch.setenv("NEWSMON_CLAIM_LEASE_SECONDS", "2")
    links = serve_feed(env, feed_server, {"/c/1.html": article_html("对日出口管制", story(1))})
    settings = load_settings()
    poll_stage(settings, es, indices, load_feeds(settings.config_file("feeds.yaml"), settings.feed_interval_minutes))
    # A run that claimed the entry and died: the claim is written, nothing else.
    claims, _ = queue.claim(es, indices, 10, datetime.now(UTC), timedelta(seconds=2), datetime.now(UTC))
    assert [c.attempt for c in claims] == [1]

    assert process_entries(settings, es, indices)["queued"] == 0, "a held claim is not taken"
    time.sleep(2.1)
    counts = process_entries(settings, es, indices)
    assert counts["queued"] == 1 and counts["indexed"] == 1
    (state,) = entry_states(es, indices).values()
    assert state["state"] == "done" and state["attempts"] == 2
    assert feed_docs(es, indices)[canonical_url(links["/c/1.html"])]["extraction"] == "ok"


def test_an_entry_whose_attempts_never_finish_is_quarantined_from_the_feed_text(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    es, indices = store
    monkeypatch.setenv("NEWSMON_ENTRY_MAX_ATTEMPTS", "1")
    serve_feed(env, feed_server, {"/q/1.html": article_html("对日出口管制", story(1))})
    settings = load_settings()
    poll_stage(settings, es, indices, load_feeds(settings.config_file("feeds.yaml"), settings.feed_interval_minutes))
    queue.claim(es, indices, 10, datetime.now(UTC), timedelta(seconds=0), datetime.now(UTC))  # died at once
    with faults.trial("entry whose attempts never finish"):
        counts = process_entries(settings, es, indices)
    faults.account(faults.expected_ids([feed_server.url("/q/1.html")]), faults.indexed_ids(es, indices))
    assert counts["entries_quarantined"] == 1 and counts["indexed"] == 1
    assert not feed_server.hits("/q/1.html"), "the page that took the run down is not fetched again"
    (doc,) = feed_docs(es, indices).values()
    assert (doc["extraction"], doc["extraction_reason"], doc["extraction_attempts"]) == ("failed", "quarantined", 1)
    assert doc["body"] == "摘要 /q/1.html"
    (state,) = entry_states(es, indices).values()
    assert state["state"] == "failed" and "quarantined" in state["last_error"]
    assert state["error_kind"] == "unfinished"


def test_pages_that_crash_or_hang_the_extractor_are_quarantined_and_never_block_a_run(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer
) -> None:
    es, indices = store
    links = serve_feed(
        env,
        feed_server,
        {
            "/p/crash.html": article_html("崩溃", ["NEWSMON-TEST-SEGFAULT", *story(1)]),
            "/p/hang.html": article_html("卡住", ["NEWSMON-TEST-HANG", *story(2)]),
            "/p/good.html": article_html("正常", story(3)),
        },
    )
    inject = {"PYTHONPATH": str(FAULTS), "NEWSMON_EXTRACT_TIMEOUT": "2"}
    crash, hang, good = (canonical_url(links[p]) for p in ("/p/crash.html", "/p/hang.html", "/p/good.html"))
    outcomes = []
    for _ in range(3):
        with faults.trial("pages that crash or hang the extractor", inputs=2):
            faults.finished(newsmon_run(inject))
        faults.account(faults.expected_ids(links.values()), faults.indexed_ids(es, indices))
        docs, states = feed_docs(es, indices), entry_states(es, indices)
        outcomes.append({url: (states[url]["state"], docs[url]["extraction_reason"]) for url in (crash, hang)})
        assert docs[good]["extraction"] == "ok" and states[good]["state"] == "done"
        assert docs[crash]["extraction"] == docs[hang]["extraction"] == "failed"
        assert docs[crash]["body"] == "摘要 /p/crash.html", "the feed's text stands in"
    assert outcomes[0] == {crash: ("retry", "worker_died"), hang: ("retry", "timeout")}
    assert outcomes[1] == outcomes[2] == {crash: ("failed", "worker_died"), hang: ("failed", "timeout")}
    states = entry_states(es, indices)
    assert states[crash]["last_error"] == "quarantined after 2 attempts: worker_died"
    assert states[hang]["last_error"] == "quarantined after 2 attempts: timeout"
    assert failures_by_kind(es, indices) == {("failed", "worker_died"): 1, ("failed", "extraction_timeout"): 1}
    assert len(feed_server.hits("/p/crash.html")) == len(feed_server.hits("/p/hang.html")) == 2, (
        "not tried a third time"
    )


def test_a_relevant_article_is_built_in_full_while_its_worker_loads_the_pos_model_for_it(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer
) -> None:
    """jieba's POS model loads for a worker's first relevant article, not at start-up: seconds that
    must not count against the page's time limit, or the page would be cut and fall back to the feed's text."""
    es, indices = store
    page = article_html("中方对日实施两用物项出口管制", story(1), published="2026-01-06T09:00:00+08:00")
    serve_feed(env, feed_server, {"/p/relevant.html": page})
    # Below the model's load (about 1.4 s of CPU), above this page's own extraction and tagging.
    faults.finished(newsmon_run({"NEWSMON_EXTRACT_TIMEOUT": "0.5"}))
    (doc,) = feed_docs(es, indices).values()
    assert (doc["extraction"], doc["extraction_reason"]) == ("ok", None)
    assert doc["relevance"]["relevant"]
    assert doc["discovered"], "discovery ran, with the POS model"


def test_a_page_slow_in_wall_time_only_is_extracted_not_cut(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer
) -> None:
    """On a loaded machine a page's wall time is many times its CPU time: the deadline counts CPU."""
    es, indices = store
    links = serve_feed(env, feed_server, {"/p/waits.html": article_html("等待", ["NEWSMON-TEST-WAITS", *story(1)])})
    output = faults.finished(newsmon_run({"PYTHONPATH": str(FAULTS), "NEWSMON_EXTRACT_TIMEOUT": "2"}))
    doc = feed_docs(es, indices)[canonical_url(links["/p/waits.html"])]
    assert doc["extraction"] == "ok", doc.get("extraction_reason")
    assert "replacing extraction workers" not in output


def test_a_page_that_blocks_its_worker_without_cpu_is_cut_at_the_wall_clock_limit(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer
) -> None:
    """A worker deadlocked (or stuck in a syscall) never reaches the CPU deadline: the wall-clock limit ends it."""
    es, indices = store
    links = serve_feed(
        env,
        feed_server,
        {
            "/p/blocks.html": article_html("阻塞", ["NEWSMON-TEST-BLOCKS", *story(1)]),
            "/p/good.html": article_html("正常", story(2)),
        },
    )
    inject = {"PYTHONPATH": str(FAULTS), "NEWSMON_EXTRACT_TIMEOUT": "2", "NEWSMON_EXTRACT_WALL_TIMEOUT": "10"}
    blocks, good = (canonical_url(links[p]) for p in ("/p/blocks.html", "/p/good.html"))
    outcomes = []
    for _ in range(2):
        with faults.trial("a page that blocks its worker", inputs=1):
            output = faults.finished(newsmon_run(inject), timeout=240)
        faults.account(faults.expected_ids(links.values()), faults.indexed_ids(es, indices))
        docs, states = feed_docs(es, indices), entry_states(es, indices)
        outcomes.append((states[blocks]["state"], docs[blocks]["extraction"], docs[blocks]["extraction_reason"]))
        assert docs[blocks]["body"] == "摘要 /p/blocks.html", "the feed's text stands in"
        assert (docs[good]["extraction"], states[good]["state"]) == ("ok", "done")
        assert f"extraction of {links['/p/blocks.html']} outlived 10.0s of wall-clock time" in output
    assert outcomes == [("retry", "failed", "stalled"), ("failed", "failed", "stalled")]
    assert entry_states(es, indices)[blocks]["last_error"] == "quarantined after 2 attempts: stalled"
    assert failures_by_kind(es, indices) == {("failed", "extraction_stalled"): 1}


def test_article_ids_stay_those_of_canonical_urls() -> None:
    assert article_id(canonical_url("http://Example.org/a?utm_source=x")) == article_id("http://example.org/a")


def test_entries_whose_pages_cannot_be_had_are_charted_by_the_fetch_reason(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer
) -> None:
    es, indices = store
    good = feed_server.add("/f/good.html", article_html("正常", story(1)))
    gone = feed_server.url("/f/gone.html")  # never served: 404
    down = feed_server.add("/f/down.html", "busy", status=503, content_type="text/plain")
    feed = [{"title": p, "link": u, "summary": f"摘要 {p}"} for p, u in (("g", good), ("x", gone), ("d", down))]
    feed_server.add("/feed.xml", rss("t", feed))
    write_feeds(env, [("t", feed_server.url("/feed.xml"), "zh-Hans")])
    settings = load_settings()
    poll_stage(settings, es, indices, load_feeds(settings.config_file("feeds.yaml"), settings.feed_interval_minutes))
    process_entries(settings, es, indices)
    # The 404 is final, the 503 tried again later; both are `http`, the status is in last_error.
    assert failures_by_kind(es, indices) == {("done", "http"): 1, ("retry", "http"): 1}
    states = entry_states(es, indices)
    assert "http_404" in states[canonical_url(gone)]["last_error"]
    assert "http_503" in states[canonical_url(down)]["last_error"]
    assert (states[canonical_url(good)]["state"], states[canonical_url(good)].get("error_kind")) == ("done", None)
