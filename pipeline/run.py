"""One run of the monitor: poll → fetch → extract/tag → index → alert.

The CLI and the Airflow DAGs call these functions; each returns small counts
and writes one `stage=… key=value` line.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from elasticsearch import Elasticsearch

from pipeline import entries as queue
from pipeline.alert import Alerter
from pipeline.config import ConfigError, Settings
from pipeline.es import Indices
from pipeline.feeds import load_feeds, load_states, poll_all, save_states
from pipeline.fetch import FetchError, fetch_pages
from pipeline.index import bulk_index
from pipeline.logs import log_stage
from pipeline.mail import SmtpConfig
from pipeline.models import Extraction, Feed, FeedEntry, Page, PollStatus
from pipeline.process import ArticleBuilder, Job, build_article
from pipeline.watchlist import load_watchlist

Progress = Callable[[int, int], None]  # (done, total)


def configured_feeds(settings: Settings, names: list[str] | None = None) -> list[Feed]:
    feeds = load_feeds(settings.config_file("feeds.yaml"))
    if names is None:
        return feeds
    unknown = set(names) - {f.name for f in feeds}
    if unknown:
        raise ConfigError(f"no feed named {', '.join(sorted(unknown))} in {settings.config_file('feeds.yaml')}")
    return [f for f in feeds if f.name in names]


def poll_stage(
    settings: Settings,
    es: Elasticsearch,
    indices: Indices,
    feeds: list[Feed],
    now: datetime | None = None,
    *,
    force: bool = False,
) -> dict[str, Any]:
    """Poll feeds, queue their new entries, then save feed state (in that order, for crash safety)."""
    now = now or datetime.now(UTC)
    states = load_states(es, indices, feeds)
    results = asyncio.run(poll_all(feeds, states, settings, now, force=force))
    # One queue write for all feeds: a refresh per feed would cost more than the polling.
    new = queue.enqueue(es, indices, [e for r in results for e in r.entries], now)
    # Per feed: an article new to the queue counts for every feed that carries it, not just the first.
    new_ids = {e.article_id for e in new}
    new_by_feed = Counter(e.feed for r in results for e in r.entries if e.article_id in new_ids)
    for result in results:
        if result.status is not PollStatus.SKIPPED:
            result.state.new_entries_last_poll = new_by_feed[result.feed.name]
            if new_by_feed[result.feed.name]:
                result.state.last_new_entry_at = now.isoformat()
    save_states(es, indices, [r.state for r in results if r.status is not PollStatus.SKIPPED])
    by_status = {s: sum(1 for r in results if r.status is s) for s in PollStatus}
    counts: dict[str, Any] = {
        "polled": len(results) - by_status[PollStatus.SKIPPED],
        "not_modified": by_status[PollStatus.NOT_MODIFIED],
        "skipped": by_status[PollStatus.SKIPPED],
        "failed": by_status[PollStatus.FAILED],
        "entries": sum(len(r.entries) for r in results),
        "new": len(new),
        "without_link": sum(r.without_link for r in results),
        "bytes": sum(r.bytes for r in results),
    }
    log_stage("poll", counts)
    counts["failures"] = [f"{r.feed.name}: {r.error}" for r in results if r.error]
    return counts


def process_stage(
    settings: Settings,
    es: Elasticsearch,
    indices: Indices,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Fetch, extract, tag and index every queued entry; mark each done once indexed."""
    now = now or datetime.now(UTC)
    work = queue.pending(es, indices)
    counts = dict.fromkeys(("queued", "fetched", "fetch_failed", "extracted", "fallback", "failed", "indexed"), 0)
    counts["queued"] = len(work)
    with ArticleBuilder(settings, expected_jobs=len(work)) as builder:
        builder.start()  # workers warm up while the pages download
        fetched = asyncio.run(fetch_pages([entry for entry, _ in work], settings))
        jobs, outcomes = _jobs(fetched, {entry.article_id: n for entry, n in work}, counts)
        log_stage("fetch", {k: counts[k] for k in ("queued", "fetched", "fetch_failed")})
        batch: list[tuple[str, dict[str, Any]]] = []

        def flush() -> None:
            if batch:
                result = bulk_index(es, indices, batch, settings.bulk_size, refresh=False)
                counts["indexed"] += result.indexed
                # A rejected document would be rejected again: its entry ends as failed, with the reason.
                for doc_id, reason in result.rejected.items():
                    outcomes[doc_id] = (queue.FAILED, outcomes[doc_id][1], reason)
                queue.mark(es, indices, {doc_id: outcomes[doc_id] for doc_id, _ in batch}, now)
                batch.clear()

        for done, (job, outcome) in enumerate(builder.build(jobs), start=1):
            if isinstance(outcome, str):  # the worker died or hung on this page
                status = Extraction.FAILED if outcome == "timeout" else Extraction.FALLBACK
                built = build_article(Job(job.entry, None, fetch_error=outcome, status=status), settings, now)
            else:
                built = outcome
            doc_id, doc = built
            counts[{"ok": "extracted", "fallback": "fallback", "failed": "failed"}[doc["extraction"]]] += 1
            batch.append((doc_id, doc))
            if len(batch) >= settings.bulk_size:
                flush()
            if progress:
                progress(done, len(jobs))
        flush()
    es.indices.refresh(index=indices.articles)
    log_stage("extract", {k: counts[k] for k in ("extracted", "fallback", "failed")})
    log_stage("tag", {"tagged": len(jobs)})
    log_stage("index", {"indexed": counts["indexed"], "failed": len(jobs) - counts["indexed"]})
    return counts


def _jobs(
    fetched: list[tuple[FeedEntry, Page | FetchError]], attempts: dict[str, int], counts: dict[str, int]
) -> tuple[list[Job], dict[str, tuple[str, int, str | None]]]:
    """A job per entry, and the queue state each entry takes once its article is indexed.

    A transient fetch failure still indexes the feed's text now, and leaves the entry
    to be fetched again by a later run (up to the queue's attempt limit).
    """
    jobs: list[Job] = []
    outcomes: dict[str, tuple[str, int, str | None]] = {}
    for entry, result in fetched:
        attempt = attempts[entry.article_id] + 1
        if isinstance(result, Page):
            counts["fetched"] += 1
            jobs.append(Job(entry, result))
            outcomes[entry.article_id] = (queue.DONE, attempt, None)
        else:
            counts["fetch_failed"] += 1
            jobs.append(Job(entry, None, fetch_error=result.reason))
            retry = result.transient and attempt < queue.MAX_ATTEMPTS
            outcomes[entry.article_id] = (queue.RETRY if retry else queue.DONE, attempt, str(result))
    return jobs, outcomes


def alert_stage(
    settings: Settings,
    es: Elasticsearch,
    indices: Indices,
    smtp: SmtpConfig | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Send every rule's new matches; errors are reported in the counts, never swallowed."""
    watchlist = load_watchlist(settings.config_file("watchlist.yaml"))
    alerter = Alerter(settings, es, indices, watchlist, smtp or SmtpConfig.from_settings(settings))
    outcomes = alerter.run(now)
    return {
        "emails": sum(o.sent for o in outcomes),
        "alerted": sum(o.articles for o in outcomes),
        "held": sum(o.held for o in outcomes),
        "failed": sum(1 for o in outcomes if o.error),
        "errors": [f"{o.rule}: {o.error}" for o in outcomes if o.error],
        "delivered_to": sorted({o.where for o in outcomes if o.where}),
    }
