"""The dashboards show data: each panel's request, as Kibana sends it, on the real node.

After `newsmon setup` (templates, indices, the seeds) and one poll in which a feed fails,
with a feed that has had nothing new for nine days: every panel of every dashboard gets
rows, and those of `newsmon-analyst` are what an analyst asked for (scripts apart, names
not ids, the terms and sentences behind relevance, the failing and the quiet feed by name).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from elasticsearch import Elasticsearch
from typer.testing import CliRunner

from pipeline import entries as queue
from pipeline.cli import app
from pipeline.config import load_settings
from pipeline.es import Indices, open_store
from pipeline.feeds import FeedState, save_states
from pipeline.fetch import FetchError, FetchReason
from pipeline.models import FeedEntry
from pipeline.watchlist import load_watchlist
from tests.corpus import index_articles, load_articles
from tests.kibana import lens_request, lens_rows, panel_window, saved_objects, search_request
from tests.pages import rss, write_feeds
from tests.servers import FeedServer

DASHBOARD = "newsmon-analyst"
WEEK_STORY = ("zh-hans-eu-resourceeu-plan-seccw", "zh-hant-eu-resourceeu-plan-zeenzj")
runner = CliRunner()


@pytest.fixture
def cluster(env: Path, feed_server: FeedServer) -> tuple[Elasticsearch, Indices]:
    done = runner.invoke(app, ["setup"])
    assert done.exit_code == 0, done.output
    feed_server.add("/ok.xml", rss("ok", []))
    feed_server.add("/broken.xml", "gone", status=500)
    write_feeds(env, [("working", feed_server.url("/ok.xml"), "zh"), ("broken", feed_server.url("/broken.xml"), "zh")])
    polled = runner.invoke(app, ["poll", "--all"])
    assert "1 failed" in polled.output, polled.output
    es, indices = open_store(load_settings())
    now = datetime.now(UTC)
    quiet = FeedState(
        name="quiet",
        url="https://example.org/quiet.xml",
        language="ja",
        last_status="ok",
        last_polled_at=(now - timedelta(hours=1)).isoformat(),
        last_success_at=(now - timedelta(hours=1)).isoformat(),
        first_success_at=(now - timedelta(days=30)).isoformat(),
        last_new_entry_at=(now - timedelta(days=9)).isoformat(),
    )
    # What a poller writes for a feed that answered today but brought nothing new for nine days.
    save_states(es, indices, [quiet], loaded={quiet.name: FeedState(quiet.name, quiet.url, quiet.language)})
    # What a run marks for an entry whose page answered 404 (its feed's text is not indexed here).
    entry = FeedEntry("working", "https://example.org/gone", "https://example.org/gone", "g1", "", "", None, "zh", "")
    queue.enqueue(es, indices, [entry], now)
    (claim,), _ = queue.claim(es, indices, 1, now, timedelta(minutes=5), now)
    error = FetchError(entry.url, FetchReason.HTTP_STATUS, status=404)
    mark = queue.Mark(queue.EntryState.DONE, str(error), error.reason)
    queue.mark(es, indices, {entry.article_id: (claim, mark)}, now)
    es.indices.refresh(index=indices.entries)
    # This week's story: one report in simplified and its traditional copy, indexed yesterday.
    this_week = [a for a in load_articles() if a.id in WEEK_STORY]
    index_articles(load_settings(), [(a, now - timedelta(days=1)) for a in this_week])
    return es, indices


# Lens's "auto" interval follows the browser's width and Kibana's bar target: not translated.
UNTRANSLATED = {("lens", "newsmon-articles-over-time-by-language"): "date histogram interval 'auto'"}


def dashboard_panels(dashboard_id: str) -> list[dict[str, Any]]:
    objects = saved_objects()
    dashboard = objects[("dashboard", dashboard_id)]
    return [objects[(ref["type"], ref["id"])] for ref in dashboard["references"]]


def panel_rows(es: Elasticsearch, indices: Indices, dashboard_id: str, obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows one panel of a dashboard shows, from the request Kibana sends for it."""
    objects = saved_objects()
    window = panel_window(objects[("dashboard", dashboard_id)], obj)
    view_id = next(r["id"] for r in obj["references"] if r["type"] == "index-pattern")
    view = objects[("index-pattern", view_id)]["attributes"]
    index = {"newsmon-articles": indices.articles, "newsmon-feeds": indices.feeds, "newsmon-entries": indices.entries}[
        view["title"]
    ]
    if obj["type"] == "lens":
        request = lens_request(obj, window, view["timeFieldName"], time_zone="Asia/Shanghai")  # an analyst in Beijing
        return lens_rows(request, es.search(index=index, body=request.body).body)
    body = search_request(obj, window, view["timeFieldName"])
    return [hit["fields"] for hit in es.search(index=index, body=body)["hits"]["hits"]]


def test_every_panel_of_every_dashboard_shows_rows(cluster: tuple[Elasticsearch, Indices]) -> None:
    es, indices = cluster
    dashboards = [key[1] for key in saved_objects() if key[0] == "dashboard"]
    assert DASHBOARD in dashboards
    empty, untranslated = [], {}
    for dashboard in dashboards:
        for obj in dashboard_panels(dashboard):
            try:
                if not panel_rows(es, indices, dashboard, obj):
                    empty.append(f"{dashboard}: {obj['type']}/{obj['id']}")
            except NotImplementedError as exc:
                untranslated[(obj["type"], obj["id"])] = str(exc)
    assert empty == []
    assert untranslated == UNTRANSLATED


def test_entity_panels_of_every_dashboard_show_names_not_ids(cluster: tuple[Elasticsearch, Indices]) -> None:
    es, indices = cluster
    watchlist = load_watchlist(load_settings().config_file("watchlist.yaml"))
    ids, labels = {e.id for e in watchlist.entries}, {e.label for e in watchlist.entries}
    shown: dict[str, set[str]] = {}
    for dashboard in (key[1] for key in saved_objects() if key[0] == "dashboard"):
        for obj in dashboard_panels(dashboard):
            if obj["type"] == "lens" and obj["id"] not in {k[1] for k in UNTRANSLATED}:
                rows = panel_rows(es, indices, dashboard, obj)
                shown[obj["id"]] = {v for row in rows for v in row.values() if isinstance(v, str)}
    people = shown["newsmon-top-entities-person"]
    assert "高市早苗 (Takaichi Sanae)" in people and people <= labels
    assert shown["newsmon-top-entities-policy"] and shown["newsmon-top-entities-policy"] <= labels
    assert {panel: keys & ids for panel, keys in shown.items() if keys & ids} == {}


def test_the_analyst_dashboard_answers_the_analysts_questions(cluster: tuple[Elasticsearch, Indices]) -> None:
    es, indices = cluster
    shown = {obj["id"]: panel_rows(es, indices, DASHBOARD, obj) for obj in dashboard_panels(DASHBOARD)}
    assert len(shown) == 9
    yesterday = (datetime.now(UTC) - timedelta(days=1)).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()

    def rows(panel: str) -> list[dict[str, Any]]:
        return shown[panel]

    per_day = rows("newsmon-articles-per-day-by-script")
    by_script = {(r["c_script"], r["c_day"][:10]): r["c_count"] for r in per_day if r["c_count"]}
    # The seeds, scripts apart, on the days the pages date them.
    assert by_script == {
        ("Hans", "2026-01-12"): 1,
        ("Hans", "2026-01-20"): 1,
        ("Hant", "2026-01-12"): 2,
        ("Hans", yesterday): 1,
        ("Hant", yesterday): 1,
    }

    by_language = {(r["c_lang"], r["c_script"]): r["c_count"] for r in rows("newsmon-articles-by-language-and-script")}
    assert by_language == {("zh", "Hans"): 3, ("zh", "Hant"): 3}

    entities = [r["c_terms"] for r in rows("newsmon-top-entity-labels")]
    assert "高市早苗 (Takaichi Sanae)" in entities
    assert not [e for e in entities if "_" in e]  # names, not ids like takaichi_sanae

    assert {r["c_terms"] for r in rows("newsmon-top-sources")} >= {"网易号", "小旭青史"}

    relevant = rows("newsmon-japan-china-export-control")
    assert relevant and all(r["relevance.relevant"] == [True] for r in relevant)
    assert all(r.get("relevance.matched_terms") and r.get("relevance.evidence") for r in relevant)
    published = [r["published_at"][0] for r in relevant]
    assert published == sorted(published, reverse=True)  # newest first

    failing = rows("newsmon-failing-feeds")
    assert [(r["c_name"], r["c_errors"]) for r in failing] == [("broken", 1)]
    assert "500" in str(failing[0]["c_error"])

    assert [r["name"] for r in rows("newsmon-stale-feeds")] == [["quiet"]]

    stories_per_day = {r["c_day"][:10]: r["c_count"] for r in rows("newsmon-stories-per-day") if r["c_count"]}
    assert stories_per_day[yesterday] == 1, "two articles in two scripts, one story"
    assert sum(stories_per_day.values()) < 6, "stories are counted, not articles"
    (week,) = rows("newsmon-largest-stories-week")  # the seeds' stories are older than a week
    assert week["c_size"] == 2 and week["c_languages"] == ["zh-Hans", "zh-Hant"]
    assert week["c_title"][0] in {a.title for a in load_articles() if a.id in WEEK_STORY}


def test_the_feed_health_dashboard_charts_entry_failures_by_kind(cluster: tuple[Elasticsearch, Indices]) -> None:
    es, indices = cluster
    (panel,) = [o for o in dashboard_panels("newsmon-feed-health") if o["id"] == "newsmon-entry-failures-by-kind"]
    rows = panel_rows(es, indices, "newsmon-feed-health", panel)
    assert [(r["c_kind"], r["c_state"], r["c_count"]) for r in rows] == [("http", "done", 1)]
