"""The daily maintenance steps: retry backed-off feeds, report feed health, retag on a watchlist change."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from elasticsearch import Elasticsearch

from pipeline.config import Settings
from pipeline.es import Indices
from pipeline.feeds import feed_health, load_states
from pipeline.index import retag, stale_tag_count
from pipeline.run import configured_feeds, poll_stage
from pipeline.tag import get_tagger
from pipeline.watchlist import load_watchlist

log = logging.getLogger("newsmon.health")


def retry_backed_off_feeds(
    settings: Settings, es: Elasticsearch, indices: Indices, now: datetime | None = None
) -> dict[str, int]:
    """Poll at once every feed whose last poll failed, whatever its back-off, so a fixed feed recovers today."""
    feeds = configured_feeds(settings)
    states = load_states(es, indices, feeds)
    failing = [f for f in feeds if states[f.name].consecutive_errors > 0]
    if not failing:
        return {"retried": 0, "recovered": 0}
    counts = poll_stage(settings, es, indices, failing, now or datetime.now(UTC), force=True)
    return {"retried": len(failing), "recovered": len(failing) - counts["failed"]}


def report_feed_health(
    settings: Settings, es: Elasticsearch, indices: Indices, now: datetime | None = None
) -> dict[str, int]:
    """Log each failing and each stale feed by name; counts of both."""
    health = feed_health(es, indices, configured_feeds(settings), now or datetime.now(UTC))
    for line in health["failing"]:
        log.warning("failing feed %s", line)
    for name in health["stale"]:
        log.warning("no new entries for 7 days: %s", name)
    return {"failing": len(health["failing"]), "stale": len(health["stale"])}


def retag_if_watchlist_changed(settings: Settings, es: Elasticsearch, indices: Indices) -> dict[str, int]:
    """Retag the articles tagged with an older watchlist version; nothing when all are current."""
    version = load_watchlist(settings.config_file("watchlist.yaml")).version
    if not stale_tag_count(es, indices, version):
        return {"retagged": 0}
    return retag(
        es, indices, get_tagger(settings), workers=settings.workers, wall_timeout=settings.retag_wall_timeout
    )
