"""One run of the monitor: poll → fetch → extract/tag → index → alert.

The CLI and the Airflow DAGs call these functions; each returns small counts
and writes one `stage=… key=value` line.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from elasticsearch import Elasticsearch

from pipeline import entries as queue
from pipeline.alert import Alerter
from pipeline.config import ConfigError, Settings
from pipeline.es import Indices
from pipeline.feeds import load_feeds, load_states, poll_all, save_states
from pipeline.logs import log_stage
from pipeline.mail import SmtpConfig
from pipeline.models import Feed, PollStatus
from pipeline.ops import send_held
from pipeline.watchlist import load_watchlist


def configured_feeds(settings: Settings, names: list[str] | None = None) -> list[Feed]:
    feeds = load_feeds(settings.config_file("feeds.yaml"), settings.feed_interval_minutes)
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
    loaded = {name: replace(state) for name, state in states.items()}  # polling changes `states` in place
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
    save_states(es, indices, [r.state for r in results if r.status is not PollStatus.SKIPPED], loaded)
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


def alert_stage(
    settings: Settings,
    es: Elasticsearch,
    indices: Indices,
    smtp: SmtpConfig | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Send the failure mails held in a mail outage, then every rule's new matches; errors are reported
    in the counts, never swallowed."""
    smtp = smtp or SmtpConfig.from_settings(settings)
    watchlist = load_watchlist(settings.config_file("watchlist.yaml"))
    alerter = Alerter(settings, es, indices, watchlist, smtp)
    ops_sent = send_held(settings, es, indices, smtp)
    outcomes = alerter.run(now)
    return {
        "ops_mails": ops_sent,
        "emails": sum(o.sent for o in outcomes),
        "alerted": sum(o.articles for o in outcomes),
        "held": sum(o.held for o in outcomes),
        "failed": sum(1 for o in outcomes if o.error),
        "errors": [f"{o.rule}: {o.error}" for o in outcomes if o.error],
        "delivered_to": sorted({o.where for o in outcomes if o.where}),
    }
