"""Real feeds (feedparser's own test corpus) polled from a loopback server, with their HTTP headers.

Each corpus file names the headers it was meant to be served with (`Header:` lines in its
leading comment); the server sends exactly those, so charsets and Content-Location come
from where a real server puts them.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest
from elasticsearch import Elasticsearch

from pipeline.config import Settings
from pipeline.es import Indices
from pipeline.feeds import FeedState, PollResult, parse_feed, poll_all
from pipeline.feedxml import decode
from pipeline.models import Feed, PollStatus
from pipeline.run import configured_feeds, poll_stage
from tests.pages import rss, write_feeds
from tests.servers import FeedServer

CORPUS = Path(__file__).parent / "data" / "feeds" / "feedparser"
_HEADER = re.compile(r"^Header:\s*([\w-]+):\s*(.*?)\s*$", re.MULTILINE)
SECRET = "s3cr3t-from-the-local-disk"


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*.xml"))


def headers_of(path: Path) -> dict[str, str]:
    """The `Header:` lines of a corpus file's leading comment (which may be in UTF-16)."""
    text, _ = decode(path.read_bytes(), "")
    return {k.lower(): v for k, v in _HEADER.findall(text.split("-->", 1)[0])}


def serve(server: FeedServer, path: Path) -> Feed:
    rel = path.relative_to(CORPUS).as_posix()
    headers = headers_of(path)
    ctype = headers.pop("content-type", "application/xml")
    extra = {"Content-Location": headers["content-location"]} if "content-location" in headers else {}
    url = server.add("/" + rel, path.read_bytes(), content_type=ctype, headers=extra)
    return Feed(re.sub(r"[^a-z0-9]+", "-", rel.lower()), url, "en", 15, "UTC")


def poll(feeds: list[Feed]) -> dict[str, PollResult]:
    settings = Settings(fetch_allow_private_hosts=True, fetch_per_host_concurrency=8)
    states = {f.name: FeedState(name=f.name, url=f.url, language=f.language) for f in feeds}
    results = asyncio.run(poll_all(feeds, states, settings, datetime.now(UTC)))
    return {r.feed.name: r for r in results}


@pytest.fixture(scope="module")
def corpus() -> Iterator[tuple[FeedServer, dict[str, Feed], dict[str, PollResult]]]:
    server = FeedServer()
    server.start()
    try:
        feeds = {p.relative_to(CORPUS).as_posix(): serve(server, p) for p in corpus_files()}
        yield server, feeds, poll(list(feeds.values()))
    finally:
        server.stop()


def result_for(corpus: tuple[FeedServer, dict[str, Feed], dict[str, PollResult]], rel: str) -> PollResult:
    _, feeds, results = corpus
    return results[feeds[rel].name]


def test_no_feed_with_linked_entries_ends_with_nothing_and_no_reason(corpus) -> None:  # type: ignore[no-untyped-def]
    server, feeds, results = corpus
    silent, linked_feeds = [], 0
    for rel, feed in feeds.items():
        path = CORPUS / rel
        served = {"content-location": server.url("/" + rel), **headers_of(path)}
        reference = feedparser.parse(path.read_bytes(), response_headers=served)
        linked = [e for e in reference.entries if e.get("link")]
        linked_feeds += bool(linked)
        result = results[feed.name]
        if result.status is PollStatus.FAILED:
            assert result.error, rel
        elif linked and not result.entries:
            silent.append(rel)
        elif reference.entries and not result.entries:
            assert result.without_link == len(reference.entries), rel
    assert silent == []
    assert linked_feeds >= 10  # the corpus really has feeds with linked entries


def test_relative_entry_links_resolve_against_the_feed_url_or_content_location(corpus) -> None:  # type: ignore[no-untyped-def]
    server = corpus[0]
    docuri = result_for(corpus, "wellformed/base/http_entry_link_base_docuri.xml")
    assert [e.url for e in docuri.entries] == [server.url("/relative/link")]
    located = result_for(corpus, "wellformed/base/http_entry_link_base_content_location.xml")
    assert [e.url for e in located.entries] == ["http://example.com/relative/link"]


def test_rss_1_0_rdf_items_are_entries(corpus) -> None:  # type: ignore[no-untyped-def]
    result = result_for(corpus, "wellformed/rdf/rdf_item_link.xml")
    assert result.status is PollStatus.OK and [e.url for e in result.entries] == ["http://example.com/1"]


@pytest.mark.parametrize(
    "rel", ["wellformed/rss/entity_in_doctype.xml", "wellformed/rdf/doctype_contains_entity_decl.xml"]
)
def test_feeds_with_a_harmless_doctype_are_polled(corpus, rel: str) -> None:  # type: ignore[no-untyped-def]
    result = result_for(corpus, rel)
    assert result.status is PollStatus.OK, result.error


def test_header_charset_counts(corpus) -> None:  # type: ignore[no-untyped-def]
    result = result_for(corpus, "encoding/http_text_xml_charset_2.xml")
    assert [e.summary for e in result.entries] == ["This is a \xa3\u201ctest.\u201d"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gb2312", "不归移民漫画系列：专业工作"),
        ("shiftjis", "DrecomRSSに記事投稿が反映されない"),
        ("eucjp", "ゲーム三昧な正月"),
        ("big5", "我希望"),
    ],
)
def test_cjk_feeds_without_any_declaration_are_decoded(name: str, expected: str) -> None:
    text, _ = decode((CORPUS / "illformed" / "chardet" / f"{name}.xml").read_bytes(), "text/xml")
    assert expected in text


def test_a_charset_given_only_in_the_header_is_used() -> None:
    body = (CORPUS / "illformed" / "chardet" / "gb2312.xml").read_bytes()
    feed = Feed("gb", "http://127.0.0.1/gb.xml", "zh-Hans", 15, "Asia/Shanghai")
    item = b"<link>http://example.com/a</link></item>"
    parsed = parse_feed(feed, body.replace(b"</item>", item), headers={"Content-Type": "text/xml; charset='gb2312'"})
    assert [e.title for e in parsed.entries] == ["不归移民漫画系列：专业工作"]


def test_entries_without_links_are_counted_and_named(caplog: pytest.LogCaptureFixture) -> None:
    feed = Feed("no-links", "http://127.0.0.1/no-links.xml", "en", 15, "UTC")
    body = (CORPUS / "illformed" / "chardet" / "shiftjis.xml").read_bytes()
    with caplog.at_level(logging.WARNING, logger="pipeline.feeds"):
        parsed = parse_feed(feed, body)
    assert parsed.entries == [] and parsed.without_link == 1
    assert "no-links" in caplog.text and "lack a usable link" in caplog.text


def _bomb(encoding: str) -> bytes:
    """Generated: nested entities that expand to 10^9 characters (the 'billion laughs')."""
    decl = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">' for i in range(1, 10)
    )
    xml = f'<?xml version="1.0" encoding="{encoding}"?><!DOCTYPE rss [{decl}]><rss version="2.0"><channel>'
    xml += "<item><title>&lol9;</title><link>http://example.com/a</link></item></channel></rss>"
    return xml.encode(encoding)


def _quadratic() -> bytes:
    """Generated: one 50 kB entity referenced 20,000 times (1 GB expanded, no nesting)."""
    head = '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "' + "x" * 50_000 + '">]>'
    return (head + "<rss><channel><title>" + "&a;" * 20_000 + "</title></channel></rss>").encode()


@pytest.mark.parametrize("body", [_bomb("utf-8"), _bomb("utf-16"), _quadratic()], ids=["utf8", "utf16", "quadratic"])
def test_entity_bombs_are_refused_naming_the_feed(feed_server: FeedServer, body: bytes) -> None:
    feed = Feed("bomb", feed_server.add("/bomb.xml", body, content_type="application/xml"), "en", 15, "UTC")
    result = poll([feed])["bomb"]
    assert result.status is PollStatus.FAILED and result.entries == []
    assert "xml_entity_bomb" in (result.error or "") and "feed bomb" in (result.error or "")


def test_external_entities_are_never_read(feed_server: FeedServer, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]><rss version="2.0">'
        "<channel><title>&xxe;</title><item><title>Story &xxe;</title><summary>&xxe;</summary>"
        "<link>http://example.com/story</link></item></channel></rss>"
    )
    feed = Feed("xxe", feed_server.add("/xxe.xml", body, content_type="application/xml"), "en", 15, "UTC")
    result = poll([feed])["xxe"]
    assert result.status is PollStatus.OK
    assert [e.url for e in result.entries] == ["http://example.com/story"]
    assert all(SECRET not in e.title + e.summary for e in result.entries)


def test_new_counts_are_per_feed_and_linkless_entries_are_on_the_feed_state(
    env: Path, store: tuple[Elasticsearch, Indices], settings: Settings, feed_server: FeedServer
) -> None:
    es, indices = store
    shared = [{"title": "Shared story", "link": feed_server.url("/shared.html")}]
    feed_server.add("/a.xml", rss("A", shared), content_type="application/rss+xml")
    feed_server.add("/b.xml", rss("B", shared), content_type="application/rss+xml")
    feed_server.add("/nolinks.xml", (CORPUS / "illformed" / "chardet" / "shiftjis.xml").read_bytes())
    write_feeds(
        env,
        [(n, feed_server.url(f"/{n}.xml"), "en") for n in ("a", "b")]
        + [("nolinks", feed_server.url("/nolinks.xml"), "ja")],
    )
    counts = poll_stage(settings, es, indices, configured_feeds(settings))
    assert counts["new"] == 1 and counts["without_link"] == 1
    states = {n: es.get(index=indices.feeds, id=n)["_source"] for n in ("a", "b", "nolinks")}
    assert [states[n]["new_entries_last_poll"] for n in ("a", "b")] == [1, 1]
    assert states["nolinks"]["without_link_last_poll"] == 1 and states["nolinks"]["last_status"] == "ok"
