"""Feeds to articles against a loopback feed server and a real Elasticsearch."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from elastic_transport import ConnectionError as TransportConnectionError
from elasticsearch import Elasticsearch
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import Settings, load_settings
from pipeline.es import Indices, StoreUnavailable, connect, open_store
from pipeline.esnode import EmbeddedNode
from pipeline.feeds import feed_health
from pipeline.lifecycle import process_entries
from pipeline.maintenance import report_feed_health, retry_backed_off_feeds
from pipeline.models import article_id
from pipeline.run import configured_feeds, poll_stage
from pipeline.setup import setup_indices
from pipeline.urls import canonical_url
from tests.pages import (
    EXPORT_CONTROL_PARAGRAPHS,
    UNRELATED_PARAGRAPHS,
    article_html,
    feed_docs,
    rss,
    run_once,
    write_feeds,
)
from tests.servers import FeedServer

runner = CliRunner()


def feed_state(es: Elasticsearch, indices: Indices, name: str) -> dict:
    return es.get(index=indices.feeds, id=name)["_source"]


def serve_story(server: FeedServer, path: str, title: str, paragraphs: list[str], **kwargs) -> str:
    return server.add(path, article_html(title, paragraphs, **kwargs))


def test_first_poll_indexes_every_entry_and_an_unchanged_feed_costs_a_304(
    env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
) -> None:
    es, indices = store
    links = [serve_story(feed_server, f"/a/{i}.html", f"出口管制报道{i}", EXPORT_CONTROL_PARAGRAPHS) for i in range(3)]
    feed_server.add(
        "/feed.xml",
        rss("t", [{"title": f"出口管制报道{i}", "link": u} for i, u in enumerate(links)]),
        content_type="application/rss+xml",
    )
    write_feeds(env, [("local", feed_server.url("/feed.xml"), "zh-Hans")])

    run_once()
    indexed = feed_docs(es, indices)
    assert set(indexed) == {canonical_url(u) for u in links}
    assert all(es.exists(index=indices.articles, id=article_id(canonical_url(u))) for u in links)
    assert all(d["extraction"] == "ok" and "两用物项" in d["body"] for d in indexed.values())
    assert all("版权所有" not in d["body"] for d in indexed.values())

    page_hits = len(feed_server.hits("/a/0.html"))
    output = run_once()
    second = feed_server.hits("/feed.xml")[-1]
    assert second.get("if-none-match"), "the re-poll must be conditional"
    assert feed_state(es, indices, "local")["last_status"] == "not_modified"
    assert len(feed_server.hits("/a/0.html")) == page_hits, "nothing is fetched again"
    assert "not_modified=1" in output
    assert len(feed_docs(es, indices)) == 3


def test_one_story_in_two_feeds_and_a_tracking_link_make_one_document(
    env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
) -> None:
    es, indices = store
    clean = serve_story(feed_server, "/story.html", "日本出口管制", EXPORT_CONTROL_PARAGRAPHS)
    feed_server.add("/one.xml", rss("1", [{"title": "日本出口管制", "link": clean, "guid": "g-1"}]))
    tracked = clean + "?utm_source=rss&utm_medium=feed#comments"
    feed_server.add("/two.xml", rss("2", [{"title": "日本出口管制", "link": tracked, "guid": "other-guid"}]))
    write_feeds(env, [("one", feed_server.url("/one.xml"), "zh-Hans"), ("two", feed_server.url("/two.xml"), "zh-Hans")])

    run_once()
    assert list(feed_docs(es, indices)) == [canonical_url(clean)]
    assert len(feed_server.hits("/story.html")) == 1
    entry = es.get(index=indices.entries, id=article_id(canonical_url(clean)))["_source"]
    assert entry["feeds"] == ["one", "two"]
    assert feed_docs(es, indices)[canonical_url(clean)]["source"]["feeds"] == ["one", "two"]

    # A third outlet runs the story after the article was built: the article lists it too.
    feed_server.add("/three.xml", rss("3", [{"title": "日本出口管制", "link": tracked, "guid": "g-3"}]))
    write_feeds(
        env,
        [(name, feed_server.url(f"/{name}.xml"), "zh-Hans") for name in ("one", "two", "three")],
    )
    run_once()
    assert feed_docs(es, indices)[canonical_url(clean)]["source"]["feeds"] == ["one", "three", "two"]
    assert len(feed_server.hits("/story.html")) == 1


@pytest.mark.parametrize(("charset", "meta"), [("gbk", False), ("big5", True), ("shift_jis", False)])
def test_legacy_charsets_decode_without_mojibake(
    env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
    charset: str,
    meta: bool,
) -> None:
    es, indices = store
    if charset == "shift_jis":
        paragraphs = [
            f"第{i}報:中国商務部は日本向けの軍民両用品目に対する輸出規制を発表した。レアアースの輸出許可審査も厳しくなる。"
            for i in range(6)
        ]
        sentence = "軍民両用品目に対する輸出規制"
    elif charset == "big5":
        paragraphs = [
            f"第{i}則:中國商務部宣布加強對日本兩用物項的出口管制,涵蓋稀土等關鍵物項,日本企業擔心供應鏈中斷。"
            for i in range(6)
        ]
        sentence = "加強對日本兩用物項的出口管制"
    else:
        paragraphs = EXPORT_CONTROL_PARAGRAPHS
        sentence = "宣布加强对日本两用物项的出口管制"
    html = article_html("标题", paragraphs, charset=charset, meta_charset=meta)
    # No charset in the header: the page must be recognised from its bytes (or its meta tag).
    # Page chrome outside the charset becomes character references, as real pages do.
    link = feed_server.add("/legacy.html", html.encode(charset, "xmlcharrefreplace"), content_type="text/html")
    feed_server.add("/feed.xml", rss("t", [{"title": "legacy", "link": link}]))
    write_feeds(env, [("legacy", feed_server.url("/feed.xml"), "ja" if charset == "shift_jis" else "zh-Hans")])

    run_once()
    (doc,) = feed_docs(es, indices).values()
    assert sentence in doc["body"]
    assert "\ufffd" not in doc["body"]
    # Word search finds it whatever the script: Japanese is segmented like the query.
    query = {"shift_jis": "輸出規制", "big5": "兩用物項", "gbk": "两用物项"}[charset]
    hits = json.loads(runner.invoke(app, ["search", query, "--json"], catch_exceptions=False).stdout)
    assert [h["url"] for h in hits] == [doc["url"]]


def test_failing_feeds_are_recorded_and_do_not_stop_the_others(
    env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    es, indices = store
    monkeypatch.setenv("NEWSMON_FETCH_READ_TIMEOUT", "1")
    link = serve_story(feed_server, "/ok.html", "好消息", EXPORT_CONTROL_PARAGRAPHS)
    good_item = [{"title": "好消息", "link": link}]
    feed_server.add("/good.xml", rss("good", good_item))
    feed_server.add("/error.xml", "oops", status=500, content_type="text/plain")
    feed_server.add("/slow.xml", rss("slow", good_item), delay=3)
    broken_link = serve_story(feed_server, "/partial.html", "部分", EXPORT_CONTROL_PARAGRAPHS)
    broken = rss("broken", [{"title": "部分", "link": broken_link}]).replace(
        "</channel></rss>", "<item><title>unclosed"
    )
    feed_server.add("/broken.xml", broken)
    write_feeds(
        env,
        [
            ("good", feed_server.url("/good.xml"), "zh-Hans"),
            ("error", feed_server.url("/error.xml"), "zh-Hans"),
            ("slow", feed_server.url("/slow.xml"), "zh-Hans"),
            ("broken", feed_server.url("/broken.xml"), "zh-Hans"),
        ],
    )

    result = runner.invoke(app, ["run", "--once"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert set(feed_docs(es, indices)) == {canonical_url(link), canonical_url(broken_link)}
    error, slow, bad = (feed_state(es, indices, n) for n in ("error", "slow", "broken"))
    assert error["last_status"] == "failed" and "http_500" in error["last_error"]
    assert error["consecutive_errors"] == 1 and error["next_poll_at"] > error["last_polled_at"]
    assert slow["last_status"] == "failed" and "timeout" in slow["last_error"]
    assert bad["bozo"] is True and bad["last_error"]
    assert "error: " in result.stderr and "http_500" in result.stderr


def test_backed_off_feed_waits_until_it_is_due(
    env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
) -> None:
    es, indices = store
    feed_server.add("/error.xml", "oops", status=503, content_type="text/plain")
    write_feeds(env, [("error", feed_server.url("/error.xml"), "en")])
    assert "polled=1" in run_once()
    output = run_once()
    assert "polled=0" in output and "skipped=1" in output
    assert len(feed_server.hits("/error.xml")) == 1, "a failing feed backs off instead of being hammered"
    runner.invoke(app, ["poll", "--all"], catch_exceptions=False)
    assert len(feed_server.hits("/error.xml")) == 2
    assert feed_state(es, indices, "error")["consecutive_errors"] == 2


def test_the_daily_maintenance_retries_only_backed_off_feeds_and_reports_their_recovery(
    env: Path,
    settings: Settings,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
) -> None:
    es, indices = store
    feed_server.add("/error.xml", "oops", status=503, content_type="text/plain")
    feed_server.add("/good.xml", rss("good", []))
    write_feeds(env, [("error", feed_server.url("/error.xml"), "en"), ("good", feed_server.url("/good.xml"), "en")])
    run_once()
    assert report_feed_health(settings, es, indices) == {"failing": 1, "stale": 0}

    feed_server.add("/error.xml", rss("error", []))  # mended: the back-off would keep it waiting
    assert retry_backed_off_feeds(settings, es, indices) == {"retried": 1, "recovered": 1}
    assert len(feed_server.hits("/error.xml")) == 2 and len(feed_server.hits("/good.xml")) == 1
    assert feed_state(es, indices, "error")["consecutive_errors"] == 0
    assert report_feed_health(settings, es, indices) == {"failing": 0, "stale": 0}
    assert retry_backed_off_feeds(settings, es, indices) == {"retried": 0, "recovered": 0}


def test_oversized_page_is_cut_pdf_refused_and_loopback_refused_by_default(
    env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    es, indices = store
    big = article_html("大页面", EXPORT_CONTROL_PARAGRAPHS + ["填充内容。" * 200] * 7000)
    assert len(big.encode()) > 20_000_000
    big_link = feed_server.add("/big.html", big)
    pdf_link = feed_server.add("/doc.pdf", b"%PDF-1.7 " + b"0" * 5000, content_type="application/pdf")
    feed_server.add(
        "/feed.xml",
        rss(
            "t",
            [
                {"title": "big", "link": big_link},
                {"title": "pdf", "link": pdf_link, "summary": "一份PDF文件"},
            ],
        ),
    )
    write_feeds(env, [("t", feed_server.url("/feed.xml"), "zh-Hans")])
    run_once()
    by_url = feed_docs(es, indices)
    cut = by_url[canonical_url(big_link)]
    assert cut["fetch"]["truncated"] is True and cut["fetch"]["bytes"] == 5_000_000
    refused = by_url[canonical_url(pdf_link)]
    assert refused["extraction"] == "fallback" and refused["extraction_reason"] == "not_html"
    assert refused["body"] == "一份PDF文件"

    # Default setting: a link that resolves to loopback is never fetched.
    monkeypatch.setenv("NEWSMON_FETCH_ALLOW_PRIVATE_HOSTS", "false")
    from datetime import UTC, datetime

    from pipeline import entries as queue
    from pipeline.config import load_settings
    from pipeline.lifecycle import process_entries
    from pipeline.models import FeedEntry

    link = serve_story(feed_server, "/private.html", "私有", EXPORT_CONTROL_PARAGRAPHS)
    entry = FeedEntry("t", canonical_url(link), link, link, "私有", "", None, "zh-Hans", "Asia/Shanghai")
    queue.enqueue(es, indices, [entry], datetime.now(UTC))
    process_entries(load_settings(), es, indices)
    doc = es.get(index=indices.articles, id=entry.article_id)["_source"]
    assert doc["extraction_reason"] == "private_address"
    assert not feed_server.hits("/private.html")


def test_unrelated_article_is_indexed_but_not_relevant(
    env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
) -> None:
    es, indices = store
    link = serve_story(feed_server, "/weather.html", "降温", UNRELATED_PARAGRAPHS)
    feed_server.add("/feed.xml", rss("t", [{"title": "降温", "link": link}]))
    write_feeds(env, [("t", feed_server.url("/feed.xml"), "zh-Hans")])
    run_once()
    (doc,) = feed_docs(es, indices).values()
    assert doc["relevance"]["relevant"] is False


def test_elasticsearch_stopped_mid_run_loses_and_doubles_nothing(
    env: Path,
    feed_server: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # A node of this test's own, so stopping it leaves the session's node alone.
    node = EmbeddedNode(Settings(var_dir=tmp_path / "node"), instance="stopped-mid-run")
    monkeypatch.setenv("NEWSMON_ES_URL", node.start().url)
    monkeypatch.setenv("NEWSMON_BULK_SIZE", "1")
    monkeypatch.setenv("NEWSMON_CLAIM_LEASE_SECONDS", "1")  # the failed run's claims expire before the re-run
    try:
        links = [
            serve_story(feed_server, f"/m/{i}.html", f"报道{i}", [f"{i}{p}" for p in EXPORT_CONTROL_PARAGRAPHS])
            for i in range(6)
        ]
        feed_server.add("/feed.xml", rss("t", [{"title": str(i), "link": u} for i, u in enumerate(links)]))
        write_feeds(env, [("t", feed_server.url("/feed.xml"), "zh-Hans")])
        settings = load_settings()
        setup_indices(connect(settings), settings)
        es, indices = open_store(settings)
        poll_stage(settings, es, indices, configured_feeds(settings))

        def stop_after_two(done: int, total: int) -> None:
            if done == 2:
                node.stop()

        with pytest.raises((TransportConnectionError, StoreUnavailable)):
            process_entries(settings, es, indices, progress=stop_after_two)
        # The CLI says so in one line, naming the cluster, and exits non-zero.
        result = runner.invoke(app, ["run", "--once"])
        assert result.exit_code == 1 and "unreachable" in result.stderr and settings.es_url in result.stderr

        monkeypatch.setenv("NEWSMON_ES_URL", node.start().url)
        monkeypatch.delenv("NEWSMON_BULK_SIZE")
        run_once()
        es, indices = open_store(load_settings())
        assert set(feed_docs(es, indices)) == {canonical_url(u) for u in links}
        es.indices.refresh(index=indices.articles)
        assert es.count(index=indices.articles)["count"] == len(links)
    finally:
        node.stop()


def test_extract_command_prints_one_json_object_per_page(env: Path, feed_server: FeedServer, tmp_path: Path) -> None:
    page = tmp_path / "story.html.gz"
    page.write_bytes(gzip.compress(article_html("中方对日出口管制", EXPORT_CONTROL_PARAGRAPHS).encode("gbk")))
    url = serve_story(
        feed_server, "/e.html", "日本出口管制", EXPORT_CONTROL_PARAGRAPHS, published="2026-01-06T16:20:00+08:00"
    )
    missing = feed_server.url("/gone.html")
    broken = tmp_path / "broken.html.gz"
    broken.write_bytes(b"not gzip at all")
    result = runner.invoke(app, ["extract", str(page), url, missing, str(broken), "--json"])
    assert result.exit_code == 1  # bad sources fail alone, each on its own line
    first, second, third, fourth = (json.loads(line) for line in result.stdout.splitlines())
    assert fourth["source"] == str(broken) and fourth["status"] == "failed" and "gzip" in fourth["reason"]
    assert first["source"] == str(page) and first["status"] == "ok"
    assert "两用物项" in first["body"] and first["title"] == "中方对日出口管制"
    assert second["source"] == url and second["published_at"] == "2026-01-06T16:20:00+08:00"
    assert third["source"] == missing and third["status"] == "failed" and "http_404" in third["reason"]


def test_feed_health_names_failing_feeds_and_feeds_quiet_for_a_week(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer
) -> None:
    es, indices = store
    link = serve_story(feed_server, "/h.html", "健康", EXPORT_CONTROL_PARAGRAPHS)
    feed_server.add("/lively.xml", rss("l", [{"title": "h", "link": link}]))
    feed_server.add("/empty.xml", rss("e", []))
    feed_server.add("/down.xml", "no", status=500, content_type="text/plain")
    write_feeds(env, [(n, feed_server.url(f"/{n}.xml"), "zh-Hans") for n in ("lively", "empty", "down")])
    settings = load_settings()
    feeds = configured_feeds(settings)
    now = datetime.now(UTC)
    poll_stage(settings, es, indices, feeds, now)
    today = feed_health(es, indices, feeds, now)
    assert [f.split(":")[0] for f in today["failing"]] == ["down"] and "http_500" in today["failing"][0]
    assert today["stale"] == [], "a feed added today is not stale yet"
    a_week_on = feed_health(es, indices, feeds, now + timedelta(days=8))
    assert a_week_on["stale"] == ["empty", "lively"]


def test_a_feed_is_not_polled_again_while_its_response_is_fresh(
    env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
) -> None:
    es, indices = store
    story = {"title": "出口管制", "link": serve_story(feed_server, "/s.html", "出口管制", EXPORT_CONTROL_PARAGRAPHS)}
    feed_server.add("/hour.xml", rss("h", [story]), headers={"Cache-Control": "public, max-age=3600"})
    feed_server.add(
        "/expires.xml",
        rss("e", [story]),
        headers={"Date": "Tue, 01 Dec 2026 10:00:00 GMT", "Expires": "Tue, 01 Dec 2026 10:20:00 GMT"},
    )
    feed_server.add("/revalidate.xml", rss("r", [story]), headers={"Cache-Control": "no-cache, max-age=3600"})
    write_feeds(env, [(n, feed_server.url(f"/{n}.xml"), "zh-Hans") for n in ("hour", "expires", "revalidate")])
    settings = load_settings()
    feeds = configured_feeds(settings)  # interval_minutes: 0, so only the responses hold polls back
    start = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)

    def polls_at(minutes: int) -> dict[str, int]:
        poll_stage(settings, es, indices, feeds, start + timedelta(minutes=minutes))
        return {n: len(feed_server.hits(f"/{n}.xml")) for n in ("hour", "expires", "revalidate")}

    assert polls_at(0) == {"hour": 1, "expires": 1, "revalidate": 1}
    assert polls_at(10) == {"hour": 1, "expires": 1, "revalidate": 2}, "no-cache: asked again, conditionally"
    assert polls_at(21) == {"hour": 1, "expires": 2, "revalidate": 3}
    assert polls_at(61) == {"hour": 2, "expires": 3, "revalidate": 4}
    assert feed_server.hits("/hour.xml")[-1].get("if-none-match")
