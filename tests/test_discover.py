"""Names beyond the watchlist, found in real articles (tests/data/articles) and shown by `inspect`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import Settings
from pipeline.es import open_store
from pipeline.models import DiscoveredName, NameType
from pipeline.tag import Tagger
from pipeline.text import normalise
from pipeline.watchlist import load_watchlist
from tests.conftest import CONFIG_DIR
from tests.corpus import ARTICLES_DIR, index_articles, load_articles
from tests.kibana import TimeWindow, saved_objects, search_request

runner = CliRunner()


@pytest.fixture(scope="module")
def tagger(cache_dir: Path) -> Tagger:
    return Tagger(load_watchlist(CONFIG_DIR / "watchlist.yaml"), CONFIG_DIR, cache_dir)


def discovered(tagger: Tagger, stem: str) -> list[DiscoveredName]:
    article = next(a for a in load_articles() if a.id == stem)
    return tagger.tag(article.title, article.body).discovered


def _inspect(env: Path, stem: str) -> dict[str, object]:
    result = runner.invoke(app, ["inspect", str(ARTICLES_DIR / f"{stem}.txt"), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_inspect_json_lists_the_listed_japanese_companies_as_written(env: Path) -> None:
    # MOFCOM's 24 February 2026 control list as a Taiwanese outlet printed it (traditional script).
    found = _inspect(env, "zh-hant-entity-lists-cnyes")["discovered"]
    assert isinstance(found, list)
    by_name = {d["name"]: d for d in found}
    assert {"三菱造船株式會社", "三菱重工"} <= set(by_name), sorted(by_name)
    assert by_name["三菱造船株式會社"]["type"] == NameType.ORGANISATION
    assert all(set(d) == {"name", "type", "count"} and d["count"] >= 1 for d in found)
    # Watchlist names are tagged as entities, never "discovered" again.
    assert not {"日本", "中國商務部", "商務部"} & set(by_name)


def test_names_are_found_in_japanese_and_english_reports_of_the_same_lists(tagger: Tagger) -> None:
    japanese = {d.name for d in discovered(tagger, "ja-entity-lists-livedoor-b")}
    assert {"三菱造船", "防衛大学校"} <= japanese
    english = {d.name for d in discovered(tagger, "en-entity-lists-supplychainreport")}
    assert {"Kawasaki Heavy Industries", "Subaru Corporation", "IHI Corporation"} <= english
    # Title-cased words that open a sentence, or a day of the week, are not names.
    assert not {"Tuesday", "The", "Under"} & english


def test_discovery_runs_on_relevant_articles_only(tagger: Tagger) -> None:
    # Hard negatives and unrelated news name companies too; only relevant articles are searched.
    others = [a for a in load_articles() if not a.relevant][:8]
    for article in others:
        tags = tagger.tag(article.title, article.body)
        assert tags.relevance.relevant or tags.discovered == [], article.id


def test_boilerplate_bylines_give_no_names(tagger: Tagger) -> None:
    names = {normalise(d.name) for d in discovered(tagger, "zh-hant-entity-lists-cnyes")}
    # "鉅亨網編譯鍾詠翔 2026-02-24 10:23" is the outlet's byline line.
    assert normalise("鍾詠翔") not in names


def test_a_name_after_a_title_is_not_cut_short(tagger: Tagger) -> None:
    # 商務部發言人何詠前回嗆 …, 記者會，何詠前面對 …: jieba alone cuts the name to 何詠 + 前.
    names = {d.name: d for d in discovered(tagger, "zh-hant-mofcom-rebuts-takaichi-yahoo-a")}
    assert "何詠前" in names and names["何詠前"].type == NameType.PERSON
    assert "何詠" not in names
    # 新聞發言人何亞東在去年 …: cut to 何 + 亞東 (a place in jieba's dictionary).
    names = {d.name: d for d in discovered(tagger, "zh-hant-rare-earth-curbs-cnyes")}
    assert "何亞東" in names and "亞東" not in names
    # 發言人毛寧今（7日）: the article also writes 毛寧表示, so 今 is no part of the name.
    names = {d.name: d for d in discovered(tagger, "zh-hant-dual-use-ban-maoning-yahoo")}
    assert "毛寧" in names and "毛寧今" not in names


def test_kibana_search_of_discovered_names_lists_the_relevant_articles_only(settings: Settings, env: Path) -> None:
    # The saved search "Names beyond the watchlist", as Discover sends it, on the real node.
    relevant = next(a for a in load_articles() if a.id == "zh-hant-entity-lists-cnyes")
    other = next(a for a in load_articles() if not a.relevant)
    now = datetime.now(UTC)
    index_articles(settings, [(relevant, now - timedelta(days=1)), (other, now - timedelta(days=1))])
    search = saved_objects()[("search", "newsmon-discovered-names")]
    window = search["attributes"]["timeRange"]
    body = search_request(search, TimeWindow.resolve(window["from"], window["to"]), "published_at")
    es, indices = open_store(settings)
    hits = es.search(index=indices.articles, query=body["query"], size=10, source_includes=["url", "discovered"])
    found = [h["_source"] for h in hits["hits"]["hits"]]
    assert [h["url"] for h in found] == [relevant.url]
    assert "三菱造船株式會社" in {d["name"] for d in found[0]["discovered"]}
