"""Section: streaming latency under a real Airflow scheduler, item published → email received.

`newsmon airflow start` (what `make airflow` runs) on loopback runs the project's DAGs with
its settings and newsmon's (the trigger looks every NEWSMON_STREAM_POLL_SECONDS); only
newsmon_stream is unpaused, so every mail comes from a run the asset watcher started.
One real article of each labelled event of the corpus appears, at random times and in
the events' order, in the loopback feed of its language: each is a story of its own, so
each should be mailed as a new story. Each page carries its article's own day, and the
rule's max_age covers the corpus's years: dated now, three years of events would arrive
within minutes, inside one story window (pipeline/stories.py), and reports of different
events would join one story as they never do in a real stream. The first item is a
warm-up; the rest are measured, each from the moment it is in its feed to the first mail
that links it, as an item or as new coverage of a story already sent (counted), and split
at the poll that saw it and the fetch of its page. An item never mailed counts as a miss.
"""

from __future__ import annotations

import random
import shutil
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import time as clock
from pathlib import Path

from pipeline.config import PROJECT_ROOT
from pipeline.mail import COVERAGE_HEADING
from tests.bench.alerting import TimedSmtpServer, run_env, set_up
from tests.bench.feedhost import FeedHost
from tests.bench.figures import Row, Section, fmt
from tests.corpus import LANGUAGES, CorpusArticle, Kind, load_articles, load_events
from tests.pages import UNRELATED_PARAGRAPHS, article_html, rss, write_feeds
from tests.standalone import airflow_standalone
from tests.test_alerts import write_rules

TARGET_P95_S = 45.0
GAP_S = (15.0, 45.0)  # seconds between two new items, drawn uniformly
WAIT_S = 180.0  # for each item's mail, and for the warm-up
SEED = 18
MIN_PARAGRAPH_CHARS = 40


@dataclass(frozen=True)
class Published:
    article: CorpusArticle
    feed: str  # the feed's path
    link: str
    at: float  # time.monotonic() once the feed lists it


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: the smallest value at or above `share` of them."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))]


def stories() -> list[CorpusArticle]:
    """One relevant corpus article per labelled event, in the events' order, so no two are one story.

    The languages take turns (an event without the turn's language gives its longest article);
    within a language the longest article, so the page has paragraphs to extract.
    """
    by_event: dict[str, list[CorpusArticle]] = defaultdict(list)
    for article in load_articles():
        if article.kind is Kind.POSITIVE and article.event:
            by_event[article.event].append(article)
    events = load_events()
    chosen = []
    for turn, event in enumerate(sorted(by_event, key=lambda e: (events[e].date, e))):
        reports = by_event[event]
        wanted = [a for a in reports if a.language == LANGUAGES[turn % len(LANGUAGES)]] or reports
        chosen.append(max(wanted, key=lambda a: len(a.body)))
    return chosen


def measure(es_url: str, work_dir: Path, cache_dir: Path, items: int | None = None) -> Section:
    section = Section("streaming")
    articles = stories()
    items = len(articles) - 1 if items is None else items
    if len(articles) < items + 1:
        section.error = f"{len(articles)} labelled events: too few for {items} items and a warm-up"
        return section
    config_dir = work_dir / "stream-config"
    shutil.copytree(PROJECT_ROOT / "config", config_dir)
    oldest = min(a.published for a in articles)
    write_rules(config_dir, max_age_days=(datetime.now(UTC).date() - oldest).days + 2)
    rng = random.Random(SEED)
    smtp = TimedSmtpServer()
    smtp.start()
    try:
        with FeedHost() as host:
            cold = host.add("/news/cold.html", article_html("寒潮来袭", UNRELATED_PARAGRAPHS))
            listed: dict[str, list[dict[str, str]]] = {}
            for language in LANGUAGES:
                listed[language] = [{"title": "寒潮来袭", "link": cold}]
                host.add(f"/feed-{language}.xml", rss(language, listed[language]), "application/rss+xml")
            write_feeds(
                config_dir, [(f"local-{lang.lower()}", host.url(f"/feed-{lang}.xml"), lang) for lang in LANGUAGES]
            )
            env = run_env(config_dir, work_dir / "stream-var", cache_dir, es_url, smtp.port)
            section.error = set_up(env)
            if section.error:
                return section
            started = time.monotonic()
            with airflow_standalone(work_dir / "stream-airflow", env) as airflow:
                airflow.unpause("newsmon_stream")
                ready = time.monotonic() - started

                def publish(story: CorpusArticle) -> Published:
                    day = datetime.combine(story.published, clock(9), tzinfo=UTC).isoformat()
                    # The short lines (date lines, bylines) are left out: the metadata gives the date.
                    paragraphs = [p for p in story.body.split("\n\n") if len(p) > MIN_PARAGRAPH_CHARS]
                    link = host.add(f"/news/{story.id}.html", article_html(story.title, paragraphs, published=day))
                    listed[story.language].insert(0, {"title": story.title, "link": link})
                    feed = f"/feed-{story.language}.xml"
                    host.add(feed, rss(story.language, listed[story.language]), "application/rss+xml")
                    return Published(story, feed, link, time.monotonic())

                # The warm-up: the first runs of the triggerer, scheduler and task process are not steady state.
                warm_item = publish(articles[0])
                warm, _ = _mail_for(smtp, warm_item, WAIT_S)
                if warm is None:
                    tail = airflow.log.read_text(encoding="utf-8", errors="replace")[-400:]
                    section.error = f"the warm-up item was not mailed within {WAIT_S:.0f} s; airflow's log ends: {tail}"
                    return section
                published: list[Published] = []
                for story in articles[1 : items + 1]:
                    time.sleep(rng.uniform(*GAP_S))
                    published.append(publish(story))
                mailed = [_mail_for(smtp, item, WAIT_S) for item in published]
                latencies = [latency for latency, _ in mailed]
                polls = host.requests()
                watched = time.monotonic() - warm_item.at
                times = host.request_times()
                parts = [_parts(times, item, x) for item, x in zip(published, latencies, strict=True)]
    finally:
        smtp.stop()
    got = [x for x in latencies if x is not None]
    p50 = statistics.median(got) if got else None
    p95 = percentile(got, 0.95) if got else None
    breakdown = {name: _median([p[i] for p in parts]) for i, name in enumerate(PARTS)}
    unmailed = [item.article.id for item, x in zip(published, latencies, strict=True) if x is None]
    # Named, so the README can say which story each joined and why.
    as_coverage = [item.article.id for item, (_, joined) in zip(published, mailed, strict=True) if joined]
    coverage = len(as_coverage)
    section.data = {
        "streaming_p50_seconds": p50,
        "streaming_p95_seconds": p95,
        "streaming_latencies_seconds": latencies,
        "streaming_items": items,
        "streaming_mailed": len(got),
        "streaming_unmailed": unmailed,
        "streaming_items_as_new_coverage": coverage,
        "streaming_new_coverage_articles": as_coverage,
        "streaming_item_articles": [item.article.id for item in published],
        **{f"streaming_{name}_p50_seconds": value for name, value in breakdown.items()},
        "streaming_warmup_seconds": warm,
        "streaming_mails": len(smtp.messages),
        "streaming_standalone_ready_seconds": ready,
        "streaming_feed_requests": polls,
        "streaming_watched_seconds": watched,
    }
    per_language = Counter(item.article.language for item in published)
    languages = ", ".join(f"{per_language[lang]} {lang}" for lang in LANGUAGES if per_language[lang])
    section.rows = [
        Row(
            f"streaming, {items} items (one per labelled event: {languages}) at random times → email, "
            "`newsmon airflow start` (s)",
            f"p50 {fmt(p50, 1)}, p95 {fmt(p95, 1)}; {len(got)} of {items} mailed"
            + (f", {coverage} of them as new coverage of a story already sent" if coverage else ""),
            "p50 split: "
            + ", ".join(f"{name.replace('_', ' ')} {fmt(value, 1)}" for name, value in breakdown.items())
            + f"; warm-up item {fmt(warm, 1)} s; {polls} feed requests in {watched:.0f} s"
            + (f"; as new coverage: {', '.join(as_coverage)}" if as_coverage else "")
            + (f"; never mailed: {', '.join(unmailed)}" if unmailed else ""),
            f"p95 ≤ {TARGET_P95_S:.0f} s, every item mailed as a new story",
            p95 is not None and p95 <= TARGET_P95_S and not unmailed and not coverage,
        )
    ]
    if not got:
        section.error = "no item was mailed"
    return section


# An item's latency in three parts: until a poll of its feed saw it, until its page was fetched
# (the trigger's event, the scheduler, the task's start, the claim), until its mail arrived.
PARTS = ("to_poll", "poll_to_fetch", "fetch_to_mail")


def _parts(times: list[tuple[str, float]], item: Published, mailed: float | None) -> tuple[float | None, ...]:
    seen = next((t for path, t in times if path == item.feed and t >= item.at), None)
    fetched = next((t for path, t in times if item.link.endswith(path) and t >= item.at), None)
    arrived = item.at + mailed if mailed is not None else None
    if seen is None or fetched is None or arrived is None:
        return (None, None, None)
    return (seen - item.at, fetched - seen, arrived - fetched)


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _mail_for(smtp: TimedSmtpServer, item: Published, timeout: float) -> tuple[float | None, bool]:
    """Seconds from publishing to the first mail that links the item (None if none came in time), and
    whether it links it as new coverage of a story already sent rather than as an item."""
    deadline = item.at + timeout
    while True:
        for (_, message), arrived in zip(smtp.messages, smtp.arrivals, strict=False):
            body = message.get_body(("plain",))
            text = body.get_content() if body is not None else ""
            if item.link in text:
                return arrived - item.at, item.link in text.partition(COVERAGE_HEADING)[2]
        if time.monotonic() > deadline:
            return None, False
        time.sleep(0.2)
