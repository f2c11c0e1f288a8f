"""Section: streaming latency under a real Airflow scheduler, item published → email received.

`newsmon airflow start` (what `make airflow` runs) on loopback runs the project's DAGs with
its settings and newsmon's (the trigger looks every NEWSMON_STREAM_POLL_SECONDS); only
newsmon_stream is unpaused, so every mail comes from a run the asset watcher
started. After a warm-up item, ITEMS relevant stories (real articles of the labelled
corpus, meant to be each its own story, so each its own alert) appear in a loopback feed at
random times; each one's latency runs from the moment it is in the feed to the
first mail that links it, as an item or as new coverage of a story already sent (counted).
"""

from __future__ import annotations

import random
import shutil
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from pipeline.config import PROJECT_ROOT
from pipeline.mail import COVERAGE_HEADING
from tests.bench.alerting import TimedSmtpServer, run_env, set_up
from tests.bench.feedhost import FeedHost
from tests.bench.figures import Row, Section, fmt
from tests.corpus import CorpusArticle, Kind, load_articles
from tests.pages import UNRELATED_PARAGRAPHS, article_html, rss, write_feeds
from tests.standalone import airflow_standalone
from tests.test_alerts import write_rules

TARGET_P95_S = 45.0
ITEMS = 8
GAP_S = (15.0, 45.0)  # seconds between two new items, drawn uniformly
WAIT_S = 180.0  # for each item's mail, and for the warm-up
SEED = 18
MIN_PARAGRAPH_CHARS = 40


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: the smallest value at or above `share` of them."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))]


def stories() -> list[CorpusArticle]:
    """The corpus's relevant simplified-Chinese articles: distinct texts, so no two are one story's copies."""
    return [a for a in load_articles() if a.kind is Kind.POSITIVE and a.language == "zh-Hans"]


def measure(es_url: str, work_dir: Path, cache_dir: Path, items: int = ITEMS) -> Section:
    section = Section("streaming")
    articles = stories()
    if len(articles) < items + 1:
        section.error = f"{len(articles)} relevant zh-Hans corpus articles: too few for {items} items and a warm-up"
        return section
    config_dir = work_dir / "stream-config"
    shutil.copytree(PROJECT_ROOT / "config", config_dir)
    write_rules(config_dir)
    rng = random.Random(SEED)
    smtp = TimedSmtpServer()
    smtp.start()
    try:
        with FeedHost() as host:
            cold = host.add("/news/cold.html", article_html("寒潮来袭", UNRELATED_PARAGRAPHS))
            listed = [{"title": "寒潮来袭", "link": cold}]
            host.add("/feed.xml", rss("local", listed), "application/rss+xml")
            write_feeds(config_dir, [("local", host.url("/feed.xml"), "zh-Hans")])
            env = run_env(config_dir, work_dir / "stream-var", cache_dir, es_url, smtp.port)
            section.error = set_up(env)
            if section.error:
                return section
            started = time.monotonic()
            with airflow_standalone(work_dir / "stream-airflow", env) as airflow:
                airflow.unpause("newsmon_stream")
                ready = time.monotonic() - started

                def publish(i: int) -> tuple[str, float]:
                    story, now = articles[i], datetime.now(UTC).isoformat(timespec="seconds")
                    # Published now: the short lines (a page's old date line, bylines) are left out.
                    paragraphs = [p for p in story.body.split("\n\n") if len(p) > MIN_PARAGRAPH_CHARS]
                    page = article_html(story.title, paragraphs, published=now)
                    link = host.add(f"/news/{story.id}.html", page)
                    listed.insert(0, {"title": story.title, "link": link})
                    host.add("/feed.xml", rss("local", listed), "application/rss+xml")
                    return link, time.monotonic()

                # The warm-up: the first runs of the triggerer, scheduler and task process are not steady state.
                warm_link, warm_at = publish(0)
                warm, _ = _mail_for(smtp, warm_link, warm_at, WAIT_S)
                published: list[tuple[str, float]] = []
                for i in range(1, items + 1):
                    time.sleep(rng.uniform(*GAP_S))
                    published.append(publish(i))
                mailed = [_mail_for(smtp, link, at, WAIT_S) for link, at in published]
                polls = host.requests()
                watched = time.monotonic() - warm_at
    finally:
        smtp.stop()
    latencies = [latency for latency, _ in mailed]
    coverage = sum(as_coverage for _, as_coverage in mailed)
    got = [x for x in latencies if x is not None]
    p50 = statistics.median(got) if got else None
    p95 = percentile(got, 0.95) if got else None
    section.data = {
        "streaming_p50_seconds": p50,
        "streaming_p95_seconds": p95,
        "streaming_latencies_seconds": latencies,
        "streaming_warmup_seconds": warm,
        "streaming_items": items,
        "streaming_mails": len(smtp.messages),
        "streaming_items_as_new_coverage": coverage,
        "streaming_standalone_ready_seconds": ready,
        "streaming_feed_requests": polls,
        "streaming_watched_seconds": watched,
    }
    missing = items - len(got)
    section.rows = [
        Row(
            f"streaming, {items} items at random times → email, `newsmon airflow start` (s)",
            f"p50 {fmt(p50, 1)}, p95 {fmt(p95, 1)}",
            f"warm-up item {fmt(warm, 1)} s; {polls} feed requests in {watched:.0f} s"
            + (f"; {coverage} mailed as new coverage of a story already sent" if coverage else "")
            + (f"; {missing} items never mailed" if missing else ""),
            f"p95 ≤ {TARGET_P95_S:.0f} s",
            p95 is not None and p95 <= TARGET_P95_S and not missing,
        )
    ]
    if not got:
        section.error = "no item was mailed"
    return section


def _mail_for(smtp: TimedSmtpServer, link: str, published_at: float, timeout: float) -> tuple[float | None, bool]:
    """Seconds from publishing to the first mail that links `link` (None if none came in time), and
    whether it links it as new coverage of a story already sent rather than as an item."""
    deadline = published_at + timeout
    while True:
        for (_, message), arrived in zip(smtp.messages, smtp.arrivals, strict=False):
            body = message.get_body(("plain",))
            text = body.get_content() if body is not None else ""
            if link in text:
                return arrived - published_at, link in text.partition(COVERAGE_HEADING)[2]
        if time.monotonic() > deadline:
            return None, False
        time.sleep(0.2)
