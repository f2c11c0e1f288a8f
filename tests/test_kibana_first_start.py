"""What Kibana shows on first start, checked on the real node with Kibana's own query bodies.

After `newsmon setup` (the compose stack's newsmon-setup step), before any DAG run: the
saved searches find documents in their own time range, and the stale-feed search lists
exactly the feeds `feed_health` reports as stale.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load_settings
from pipeline.es import Indices, open_store
from pipeline.feeds import feed_health
from pipeline.models import Feed
from tests.kibana import TimeWindow, saved_objects, search_request


def saved_search(search_id: str) -> dict[str, Any]:
    return saved_objects()[("search", search_id)]


def kibana_body(search: dict[str, Any], time_field: str) -> dict[str, Any]:
    """The query Discover sends for a saved search opened with its own time range."""
    window = search["attributes"]["timeRange"]
    return dict(search_request(search, TimeWindow.resolve(window["from"], window["to"]), time_field)["query"])


def test_the_export_control_search_shows_the_seeds_on_first_start(env: Path) -> None:
    assert CliRunner().invoke(app, ["setup"]).exit_code == 0
    es, indices = open_store(load_settings())
    body = kibana_body(saved_search("newsmon-japan-china-export-control"), "published_at")
    assert es.count(index=indices.articles, query=body)["count"] > 0


def test_the_stale_feed_search_agrees_with_feed_health(store: tuple[Elasticsearch, Indices]) -> None:
    es, indices = store
    now = datetime.now(UTC)

    def ago(days: float) -> str:
        return (now - timedelta(days=days)).isoformat()

    states = {
        "quiet-for-ten-days": {"consecutive_errors": 0, "first_success_at": ago(30), "last_new_entry_at": ago(10)},
        "fresh-news": {"consecutive_errors": 0, "first_success_at": ago(30), "last_new_entry_at": ago(1)},
        "new-feed-no-entry-yet": {"consecutive_errors": 0, "first_success_at": ago(1)},
        "never-had-an-entry": {"consecutive_errors": 0, "first_success_at": ago(9)},
        "failing": {"consecutive_errors": 3, "first_success_at": ago(30), "last_new_entry_at": ago(20)},
    }
    for name, state in states.items():
        doc = {"name": name, "url": f"https://example.org/{name}.xml", "language": "en", "last_polled_at": ago(0.1)}
        es.index(index=indices.feeds, id=name, document=doc | state)
    es.indices.refresh(index=indices.feeds)
    feeds = [
        Feed(name=n, url=f"https://example.org/{n}.xml", language="en", interval_minutes=60, timezone="UTC")
        for n in states
    ]

    expected = feed_health(es, indices, feeds, now)["stale"]
    hits = es.search(
        index=indices.feeds, query=kibana_body(saved_search("newsmon-stale-feeds"), "last_polled_at"), size=50
    )["hits"]["hits"]

    assert expected == ["never-had-an-entry", "quiet-for-ten-days"]
    assert sorted(h["_id"] for h in hits) == expected
