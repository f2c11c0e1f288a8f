"""Sources without RSS: sitemaps, news sitemaps, listing pages and JSON lists, polled like feeds."""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from typer.testing import CliRunner

from pipeline import googlenews
from pipeline.cli import app
from pipeline.config import ConfigError
from pipeline.es import Indices
from pipeline.feeds import load_feeds
from pipeline.fetch import FetchError
from pipeline.jsonlist import parse_json_list
from pipeline.listing import article_links
from pipeline.models import Feed, SourceKind
from pipeline.sitemap import parse_sitemap
from tests.pages import EXPORT_CONTROL_PARAGRAPHS, UNRELATED_PARAGRAPHS, article_html, feed_docs, rss, run_once
from tests.servers import FeedServer

DATA = Path(__file__).parent / "data"
SITEMAPS = DATA / "sitemaps" / "advertools"
NYT = Feed("nyt", "https://www.nytimes.com/sitemaps/new/news.xml.gz", "", 30, "", SourceKind.SITEMAP)


def _load(tmp_path: Path, entry: str) -> list[Feed]:
    path = tmp_path / "feeds.yaml"
    path.write_text(f"feeds:\n  - name: src\n    url: https://example.com/list/\n{entry}", encoding="utf-8")
    return load_feeds(path, 30)


def test_kind_defaults_to_feed_and_takes_only_its_own_settings(tmp_path: Path) -> None:
    [feed] = _load(tmp_path, "")
    assert feed.kind is SourceKind.FEED
    [listing] = _load(tmp_path, "    kind: listing\n    selector: ul.list li\n    url_pattern: /art/\\d+\n")
    assert (listing.kind, listing.listing.selector, listing.listing.url_pattern) == (
        SourceKind.LISTING,
        "ul.list li",
        r"/art/\d+",
    )
    [api] = _load(tmp_path, "    kind: json\n    items: data.list\n    url_field: link\n    date_field: pubTime\n")
    assert api.json is not None and (api.json.items, api.json.url, api.json.date) == ("data.list", "link", "pubTime")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("    kind: html\n", r"feeds\[0\] \(src\): kind 'html' is not one of feed, sitemap, listing, json"),
        (
            "    kind: sitemap\n    selector: a\n",
            r"\(src\): selector is a setting of kind listing, not of kind sitemap",
        ),
        (
            "    kind: listing\n    url_pattern: '/art/(\\d+'\n",
            r"\(src\): url_pattern '/art/\(\\\\d\+' is not a regular",
        ),
        ("    kind: listing\n    selector: 'ul[[a'\n", r"\(src\): selector 'ul\[\[a' is not a CSS selector"),
        ("    kind: json\n    items: data\n", r"\(src\): kind json needs url_field"),
    ],
)
def test_a_bad_source_setting_is_refused_naming_the_source(tmp_path: Path, entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, entry)


def test_a_news_sitemap_gives_titles_publication_dates_and_language() -> None:
    parsed = parse_sitemap(NYT, (SITEMAPS / "news_sitemap.xml").read_bytes())
    assert len(parsed.entries) == 6
    first = parsed.entries[0]
    assert first.url == "https://www.nytimes.com/interactive/2020/05/11/magazine/quarantine-insanity.html"
    assert first.title == "Quarantine Was Driving Me Crazy — So I Decided to Lose My Mind on Purpose"
    # news:publication_date, not lastmod (2020-05-19), is the article's date.
    assert first.published is not None and first.published.isoformat() == "2020-05-11T09:00:01+00:00"
    assert first.language == "en"


def test_a_sitemap_index_names_its_sitemaps_newest_first_and_gzip_sitemaps_are_read() -> None:
    index = parse_sitemap(NYT, (SITEMAPS / "sitemap_index.xml").read_bytes())
    assert index.entries == []
    # The one without lastmod is taken to be current, then 2020-05-20T18:23 before the two of 2020-05-20.
    assert index.children[0].endswith("/sitemap_testing/sitemap_index.xml")
    assert index.children[1] == "https://advertools.readthedocs.io/sitemap.xml"
    assert len(index.children) == 4
    zipped = parse_sitemap(NYT, (SITEMAPS / "zipped_sitemap.xml.gz").read_bytes(), max_bytes=100_000)
    assert [e.url for e in zipped.entries][:2] == [
        "http://www.gzipped.com/",
        "http://www.gzipped.com/catalog?desc=vacation_hawaii&item=12",
    ]


def test_a_real_front_page_yields_its_article_links_and_no_chrome() -> None:
    html = gzip.decompress((DATA / "pages" / "zh-lists" / "163-1.html.gz").read_bytes()).decode("utf-8", "replace")
    links = article_links(html, "https://news.163.com/")
    urls = [link.url for link in links]
    assert len(urls) >= 100
    # Its news stories (/20/0801/16/<id>.html), photo sets and live rooms, all of 163.com; none of its
    # channel fronts, topic pages, searches or links to other sites.
    assert sum(bool(re.match(r"^https?://[a-z.]*163\.com/\d{2}/\d{4}/\d{2}/\w+\.html$", u)) for u in urls) >= 100
    assert all(re.match(r"^https?://[a-z.]*\.163\.com/", u) and sum(c.isdigit() for c in u) >= 5 for u in urls)
    assert not [u for u in urls if u.endswith("/") or "/special/" in u or "/search/" in u]
    assert all(len(link.title) >= 4 for link in links)


# --------------------------------------------------------------------------- loopback site


def _listing_page(articles: list[tuple[str, str, str]], next_page: str = "/news/index_1.html") -> str:
    """A ministry-style announcement list: nav, sidebar, pagination and footer around the article links."""
    rows = "".join(f'<li><a href="{href}">{escape(title)}</a><span>{day}</span></li>' for href, title, day in articles)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>公告 - 示例部</title></head><body>"
        '<div class="header"><a href="/">首页</a> <a href="/about/">机构设置</a></div>'
        '<nav><a href="/news/">新闻发布</a> <a href="/zcfb/">政策发布</a>'
        ' <a href="/news/topics/trade/">贸易专题</a></nav>'
        '<aside class="sidebar"><h3>热点</h3>'
        '<a href="/news/2025/01/05/art_0001.html">去年的热点新闻报道标题</a>'
        '<a href="/news/topics/export-control/">出口管制专题栏目</a></aside>'
        f'<div class="main"><ul class="txtList">{rows}</ul>'
        '<div class="pages"><a href="/news/index_1.html">2</a> <a href="/news/index_2.html">3</a>'
        f' <a href="{next_page}">下一页</a></div></div>'
        '<div id="footer"><a href="/contact.html">联系我们</a> <a href="/sitemap.html">网站地图</a>'
        ' <a href="https://www.gov.example/2026/11/20/state-council-news-release.html">中国政府网最新政策发布</a></div>'
        "</body></html>"
    )


def _write_sources(config_dir: Path, sources: list[tuple[str, str, str]]) -> None:
    lines = ["feeds:"]
    for name, url, kind in sources:
        lines += [
            f"  - name: {name}",
            f"    url: {url}",
            f"    kind: {kind}",
            "    language: zh-Hans",
            "    interval_minutes: 0",
        ]
    (config_dir / "feeds.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _serve_articles(server: FeedServer, n: int, start: int = 0) -> list[tuple[str, str, str]]:
    articles = []
    for i in range(start, start + n):
        path = f"/news/2026/11/{20 + i:02d}/art_{1000 + i}.html"
        title = f"商务部公告第{i + 1}号关于两用物项出口管制"
        server.add(path, article_html(title, EXPORT_CONTROL_PARAGRAPHS))
        articles.append((path, title, f"2026-11-{20 + i:02d}"))
    return articles


def test_a_listing_feeds_articles_only_and_a_repoll_fetches_only_the_new_one(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer
) -> None:
    es, indices = store
    articles = _serve_articles(feed_server, 3)
    feed_server.add("/news/index.html", _listing_page(articles))
    _write_sources(env, [("ministry", feed_server.url("/news/index.html"), "listing")])

    run_once()
    docs = feed_docs(es, indices)
    assert sorted(docs) == sorted(feed_server.url(p) for p, _, _ in articles)
    chrome = ["/", "/about/", "/news/", "/news/2025/01/05/art_0001.html", "/news/index_1.html", "/contact.html"]
    assert all(not feed_server.hits(p) for p in chrome), "nav, sidebar, pagination and footer are never fetched"
    assert {d["source"]["name"] for d in docs.values()} == {"ministry"}

    articles = _serve_articles(feed_server, 1, start=3) + articles
    feed_server.add("/news/index.html", _listing_page(articles))
    run_once()
    assert len(feed_docs(es, indices)) == 4
    assert [len(feed_server.hits(p)) for p, _, _ in articles] == [1, 1, 1, 1], "each page fetched once"
    new = feed_docs(es, indices)[feed_server.url(articles[0][0])]
    # The page shows no date: the day beside its link in the listing is the article's.
    assert new["published_at"].startswith("2026-11-23")


def _news_sitemap(server: FeedServer, articles: list[tuple[str, str, str]]) -> str:
    urls = "".join(
        f"<url><loc>{server.url(path)}</loc><news:news><news:publication><news:name>示例</news:name>"
        f"<news:language>zh</news:language></news:publication>"
        f"<news:publication_date>{day}T10:00:00+08:00</news:publication_date>"
        f"<news:title>{escape(title)}</news:title></news:news></url>"
        for path, title, day in articles
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
        f' xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">{urls}</urlset>'
    )


def test_a_sitemap_index_to_a_news_sitemap_is_polled_twice_and_only_the_new_article_fetched(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer
) -> None:
    es, indices = store
    articles = _serve_articles(feed_server, 3)
    feed_server.add(
        "/sitemap.xml",
        '<?xml version="1.0" encoding="UTF-8"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{feed_server.url('/sitemap-news.xml')}</loc></sitemap>"
        f"<sitemap><loc>{feed_server.url('/sitemap-2019-01.xml')}</loc><lastmod>2019-01-31</lastmod></sitemap>"
        "</sitemapindex>",
        content_type="application/xml",
    )
    feed_server.add("/sitemap-news.xml", _news_sitemap(feed_server, articles), content_type="application/xml")
    _write_sources(env, [("news-sitemap", feed_server.url("/sitemap.xml"), "sitemap")])

    run_once()
    docs = feed_docs(es, indices)
    assert sorted(docs) == sorted(feed_server.url(p) for p, _, _ in articles)
    assert docs[feed_server.url(articles[0][0])]["source"]["feeds"] == ["news-sitemap"]

    articles = [*articles, *_serve_articles(feed_server, 1, start=3)]
    feed_server.add("/sitemap-news.xml", _news_sitemap(feed_server, articles), content_type="application/xml")
    run_once()
    assert feed_server.hits("/sitemap.xml")[-1].get("if-none-match"), "the index is polled conditionally"
    assert len(feed_server.hits("/sitemap-news.xml")) == 2, "an unchanged index still reads its news sitemap"
    assert len(feed_docs(es, indices)) == 4
    assert [len(feed_server.hits(p)) for p, _, _ in articles] == [1, 1, 1, 1]
    # Nothing changed: the index and its news sitemap both answer 304.
    assert "not_modified=1" in run_once()
    assert es.get(index=indices.feeds, id="news-sitemap")["_source"]["last_status"] == "not_modified"


def test_an_anti_bot_cookie_challenge_is_a_clear_failure_naming_the_source(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer
) -> None:
    es, indices = store
    # The shape of the challenge customs.gov.cn answers with (HTTP 412, a script that sets a cookie).
    challenge = (
        '<!DOCTYPE html><html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
        '<meta id="9DhefwqGPrzGxEp9hPaoag" content="x"><script type="text/javascript">'
        "$_ts=window['$_ts'];if(!$_ts)$_ts={};$_ts.nsd=21845;</script>"
        '<script src="/4QbVtADbnLVIc/d.FxJzG50F.dfe1675.js" r="m"></script></head><body></body></html>'
    )
    feed_server.add("/customs/302249/302266/302267/index.html", challenge, status=412)
    _write_sources(env, [("customs", feed_server.url("/customs/302249/302266/302267/index.html"), "listing")])
    output = run_once()
    state = es.get(index=indices.feeds, id="customs")["_source"]
    assert state["last_status"] == "failed"
    assert "anti_bot_challenge" in state["last_error"] and "listing customs" in state["last_error"]
    assert "failed=1" in output


@pytest.fixture
def google(feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """news.google.com's base URL: the loopback server under the name localhost (publishers are under
    127.0.0.1), with /rss/articles/CBMiSCRIPT, an item page that redirects by script only, as Google's do."""
    monkeypatch.setattr(googlenews, "GOOGLE_NEWS_HOSTS", frozenset({"localhost"}))
    feed_server.add("/rss/articles/CBMiSCRIPT", "<html><script>window.location='https://example.org'</script></html>")
    return feed_server.url("/").replace("127.0.0.1", "localhost").rstrip("/")


def test_google_news_items_land_under_their_real_outlet(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer, google: str
) -> None:
    es, indices = store
    redirected = feed_server.add(
        "/pub/2026/11/20/redirected-story.html", article_html("日本出口管制新规", EXPORT_CONTROL_PARAGRAPHS)
    )
    feed_server.add("/rss/articles/CBMiREDIRECT", b"", status=302, headers={"Location": redirected}, etag=False)
    wrapped = feed_server.add(
        "/pub/2026/11/21/wrapped-story.html", article_html("商务部两用物项公告", EXPORT_CONTROL_PARAGRAPHS)
    )
    items = [
        (f"{google}/rss/articles/CBMiREDIRECT", "日本出口管制新规 - 示例日报", feed_server.url("/")),
        (f"{google}/rss/articles/CBMiSCRIPT", "中国对日本两用物项出口管制 - 日本经济新闻", "https://www.nikkei.com"),
        (f"{google}/news/url?url={wrapped}", "商务部两用物项公告 - 示例日报", feed_server.url("/")),
    ]
    feed_server.add(
        "/gn.xml",
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Google News</title>'
        + "".join(
            f"<item><title>{escape(title)}</title><link>{escape(link)}</link><guid>{escape(link)}</guid>"
            f"<description>{escape(title)}：商务部宣布加强对日本两用物项的出口管制。</description>"
            f'<source url="{escape(outlet)}">{"日本经济新闻" if "nikkei" in outlet else "示例日报"}</source></item>'
            for link, title, outlet in items
        )
        + "</channel></rss>",
        content_type="application/rss+xml",
    )
    feed_server.add("/pub.xml", rss("pub", [{"title": "商务部两用物项公告", "link": wrapped}]))
    lines = ["feeds:"]
    for name, url in (("google-news", f"{google}/gn.xml"), ("publisher", feed_server.url("/pub.xml"))):
        lines += [f"  - name: {name}", f"    url: {url}", "    language: zh-Hans", "    interval_minutes: 0"]
    (env / "feeds.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    run_once()
    docs = feed_docs(es, indices)
    assert len(docs) == 3
    by_outlet = {d["source"]["domain"]: d for d in docs.values()}
    assert "localhost" not in by_outlet, "nothing is filed under Google's domain"
    # The unwrapped link is the publisher's article: one document for both feeds.
    assert docs[wrapped]["source"]["feeds"] == ["google-news", "publisher"]
    assert len(feed_server.hits("/pub/2026/11/21/wrapped-story.html")) == 1
    # A plain HTTP redirect is followed to the publisher's page.
    followed = docs[f"{google}/rss/articles/CBMiREDIRECT"]
    assert followed["final_url"] == redirected and followed["source"]["domain"] == "127.0.0.1"
    assert "两用物项" in followed["body"] and followed["extraction"] == "ok"
    # A script redirect: indexed from the item's text, under the outlet its <source> names.
    unresolved = docs[f"{google}/rss/articles/CBMiSCRIPT"]
    assert (unresolved["source"]["domain"], unresolved["source"]["site_name"]) == ("nikkei.com", "日本经济新闻")
    assert "google_news_unresolved" in unresolved["extraction_reason"]
    assert "window.location" not in unresolved["body"] and "两用物项" in unresolved["body"]


def test_feeds_discover_prints_entries_that_load_as_feeds_yaml(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSMON_FETCH_ALLOW_PRIVATE_HOSTS", "true")
    articles = _serve_articles(feed_server, 3)
    home = _listing_page(articles).replace(
        "<title>", '<link rel="alternate" type="application/rss+xml" title="RSS" href="/rss/news.xml"><title>'
    )
    feed_server.add("/", home)
    feed_server.add(
        "/rss/news.xml", rss("示例新闻", [{"title": t, "link": feed_server.url(p)} for p, t, _ in articles])
    )
    feed_server.add(
        "/robots.txt", f"User-agent: *\nDisallow: /admin/\nSitemap: {feed_server.url('/news/sitemap.xml')}\n"
    )
    feed_server.add("/news/sitemap.xml", _news_sitemap(feed_server, articles), content_type="application/xml")
    feed_server.add(
        "/atom.xml", (DATA / "feeds" / "feedparser" / "wellformed" / "atom10" / "entry_link_href.xml").read_bytes()
    )

    result = CliRunner().invoke(app, ["feeds", "discover", feed_server.url("/")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (tmp_path / "feeds.yaml").write_text("feeds:\n" + result.stdout, encoding="utf-8")
    found = {f.url: f for f in load_feeds(tmp_path / "feeds.yaml", 30)}
    assert found[feed_server.url("/rss/news.xml")].kind is SourceKind.FEED
    assert found[feed_server.url("/news/sitemap.xml")].kind is SourceKind.SITEMAP
    assert found[feed_server.url("/atom.xml")].kind is SourceKind.FEED  # a common path
    assert len(found) == 3, result.stdout

    # A site with no feed and no sitemap: its page is offered as a listing of its article links.
    bare = FeedServer()
    bare.start()
    try:
        bare.add("/press/index.html", _listing_page(_serve_articles(bare, 3)))
        result = CliRunner().invoke(app, ["feeds", "discover", bare.url("/press/index.html")], catch_exceptions=False)
    finally:
        bare.stop()
    assert result.exit_code == 0, result.output
    assert "kind: listing" in result.stdout and "3 entries now" in result.stdout


def test_the_shipped_sources_load_with_their_kinds() -> None:
    feeds = {f.name: f for f in load_feeds(Path(__file__).parents[1] / "config" / "feeds.yaml", 30)}
    assert feeds["mofcom-announcements"].kind is SourceKind.LISTING
    assert f"/zcfb/blgg/gg/{datetime.now(UTC).year}/" in feeds["mofcom-announcements"].url
    assert feeds["zaobao-china"].kind is SourceKind.LISTING
    assert feeds["rthk-greater-china"].url.endswith("/c_expressnews_greaterchina.xml")
    assert {"mofa-press-releases-ja", "mofa-press-releases-en", "meti-press", "customs-announcements"} <= set(feeds)


def test_a_json_list_endpoint_gives_entries_from_the_configured_fields(tmp_path: Path) -> None:
    [feed] = _load(
        tmp_path,
        "    kind: json\n    language: zh-Hans\n    items: data.list\n    url_field: link.href\n"
        "    title_field: title\n    date_field: pubTime\n",
    )
    # The shape of a list endpoint a page's scripts read: nested items, relative links, epoch milliseconds.
    body = (
        '{"code":0,"data":{"total":3,"list":['
        '{"title":"关于两用物项出口管制的公告","link":{"href":"/article/2026/11/20/1001.html"},"pubTime":1795363200000},'
        '{"title":"出口管制管控名单","link":{"href":"https://example.com/article/2026/11/21/1002.html"},'
        '"pubTime":"2026-11-21 09:30"},'
        '{"title":"无链接的条目","link":{}}]}}'
    ).encode()
    parsed = parse_json_list(feed, body, "https://example.com/api/list?page=1")
    assert [e.url for e in parsed.entries] == [
        "https://example.com/article/2026/11/20/1001.html",
        "https://example.com/article/2026/11/21/1002.html",
    ]
    assert parsed.without_link == 1
    first, second = parsed.entries
    assert first.title == "关于两用物项出口管制的公告" and first.published == datetime(2026, 11, 22, 16, tzinfo=UTC)
    assert second.published is not None and second.published.isoformat() == "2026-11-21T09:30:00+08:00"
    with pytest.raises(FetchError, match=r"malformed_json: json src: no list at 'data.list'"):
        parse_json_list(feed, b'{"data": {}}')


def _write_source(config_dir: Path, name: str, url: str, kind: str, settings: str) -> None:
    (config_dir / "feeds.yaml").write_text(
        f"feeds:\n  - name: {name}\n    url: {url}\n    kind: {kind}\n    language: zh-Hans\n"
        f"    interval_minutes: 0\n{settings}",
        encoding="utf-8",
    )


def _serve_source(
    config_dir: Path, server: FeedServer, path: str, body: str, kind: str, settings: str, ctype: str, **route: Any
) -> None:
    """One source served at `path`, and feeds.yaml naming only it."""
    server.add(path, body, content_type=ctype, **route)
    _write_source(config_dir, "src", server.url(path), kind, settings)


def test_a_listing_follows_next_page_up_to_its_cap_and_a_repoll_reads_only_the_first_page(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer
) -> None:
    es, indices = store
    articles = _serve_articles(feed_server, 9)[::-1]  # newest first, three to a page
    pages = ["/news/index.html", "/news/index_1.html", "/news/index_2.html"]
    for i, path in enumerate(pages):
        following = pages[i + 1] if i + 1 < len(pages) else "/news/index_3.html"
        feed_server.add(path, _listing_page(articles[3 * i : 3 * i + 3], following))
    _write_source(env, "ministry", feed_server.url(pages[0]), "listing", "    max_pages: 2\n")

    run_once()
    assert sorted(feed_docs(es, indices)) == sorted(feed_server.url(p) for p, _, _ in articles[:6])
    assert [len(feed_server.hits(p)) for p in pages] == [1, 1, 0], "two pages read, the cap keeps the third"

    articles = _serve_articles(feed_server, 1, start=9) + articles
    feed_server.add(pages[0], _listing_page(articles[:3], pages[1]))
    run_once()
    assert len(feed_docs(es, indices)) == 7
    assert [len(feed_server.hits(p)) for p in pages] == [2, 1, 0], "page 1 shows links seen before: page 2 is not read"
    assert [len(feed_server.hits(p)) for p, _, _ in articles[:7]] == [1] * 7, "each article fetched once"


def test_a_plain_sitemap_queues_only_its_newest_urls_up_to_max_urls(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer
) -> None:
    es, indices = store
    articles = _serve_articles(feed_server, 5)
    urls = "".join(
        f"<url><loc>{feed_server.url(path)}</loc><lastmod>{day}</lastmod></url>" for path, _, day in articles
    )
    body = f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'
    _serve_source(env, feed_server, "/sitemap.xml", body, "sitemap", "    max_urls: 2\n", "application/xml")
    run_once()
    newest = [feed_server.url(p) for p, _, _ in articles[-2:]]
    assert sorted(feed_docs(es, indices)) == sorted(newest)
    assert [len(feed_server.hits(p)) for p, _, _ in articles] == [0, 0, 0, 1, 1], "older URLs are never fetched"


def test_a_json_endpoint_queried_by_post_feeds_the_pipeline(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer
) -> None:
    """MOFCOM's export-control list in miniature: a POST-only endpoint, rows under pageInfo, relative URLs."""
    es, indices = store
    articles = _serve_articles(feed_server, 2)
    rows = [{"title": title, "url": path, "publishTimeStr": f"{day} 09:00:00"} for path, title, day in articles]
    _serve_source(
        env,
        feed_server,
        "/api/getColumnList",
        json.dumps({"code": 200, "pageInfo": {"total": len(rows), "rows": rows}}, ensure_ascii=False),
        "json",
        "    request_body: {columnID: 1, pageNum: 1, pageSize: 20}\n    items: pageInfo.rows\n"
        "    url_field: url\n    title_field: title\n    date_field: publishTimeStr\n",
        "application/json",
        method="POST",
    )
    run_once()
    docs = feed_docs(es, indices)
    assert sorted(docs) == sorted(feed_server.url(p) for p, _, _ in articles)
    assert feed_server.posted[0] == ("/api/getColumnList", b'{"columnID": 1, "pageNum": 1, "pageSize": 20}')
    assert feed_server.hits("/api/getColumnList")[0]["content-type"].startswith("application/json")
    run_once()
    assert len(feed_server.posted) == 2 and [len(feed_server.hits(p)) for p, _, _ in articles] == [1, 1]


def test_the_shipped_mofcom_export_control_source_is_a_json_post(tmp_path: Path) -> None:
    feeds = {f.name: f for f in load_feeds(Path(__file__).parents[1] / "config" / "feeds.yaml", 30)}
    source = feeds["mofcom-export-control"]
    assert source.kind is SourceKind.JSON and source.json is not None
    assert source.json.items == "pageInfo.rows" and '"columnID": 1' in source.json.request_body
    assert feeds["mofcom-announcements"].listing.max_pages == 3
    text = (Path(__file__).parents[1] / "config" / "feeds.yaml").read_text(encoding="utf-8")
    entry = text.split("- name: mofcom-export-control")[1].split("- name:")[0]
    assert "# unverified" in entry
    with pytest.raises(ConfigError, match=r"\(src\): max_pages must be a whole number of 1 or more, not 0"):
        _load(tmp_path, "    kind: listing\n    max_pages: 0\n")
    with pytest.raises(ConfigError, match=r"\(src\): max_urls is a setting of kind sitemap, not of kind feed"):
        _load(tmp_path, "    max_urls: 10\n")


def test_a_google_news_item_and_the_publishers_own_copy_arriving_later_are_one_story(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer, google: str
) -> None:
    es, indices = store
    # A short headline naming nothing the watchlist knows: the fingerprints alone would not join the copies.
    title = "Ministry tightens curbs on shipments, officials say"
    item_link = f"{google}/rss/articles/CBMiSCRIPT"
    feed_server.add(
        "/gn.xml",
        rss(
            "Google News",
            [{"title": f"{title} - 示例日报", "link": item_link, "pubDate": "Fri, 21 Nov 2026 02:00:00 GMT"}],
        ).replace("</item>", f'<source url="{feed_server.url("/")}">示例日报</source></item>'),
        content_type="application/rss+xml",
    )
    # Another page of the outlet, under another headline, is not the same article.
    own = feed_server.add("/pub/2026/11/21/own-copy.html", article_html(title, EXPORT_CONTROL_PARAGRAPHS))
    other = feed_server.add(
        "/pub/2026/11/21/other-story.html", article_html("寒潮来袭各地降温明显", UNRELATED_PARAGRAPHS)
    )
    (env / "feeds.yaml").write_text(
        f"feeds:\n  - name: google-news\n    url: {google}/gn.xml\n    language: zh-Hans\n    interval_minutes: 0\n",
        encoding="utf-8",
    )
    run_once()
    [item] = feed_docs(es, indices).values()
    assert "google_news_unresolved" in item["extraction_reason"] and item["source"]["domain"] == "127.0.0.1"

    feed_server.add("/pub.xml", rss("pub", [{"title": "x", "link": own}, {"title": "y", "link": other}]))
    (env / "feeds.yaml").write_text(
        f"feeds:\n  - name: publisher\n    url: {feed_server.url('/pub.xml')}\n    language: zh-Hans\n"
        "    interval_minutes: 0\n",
        encoding="utf-8",
    )
    run_once()
    docs = feed_docs(es, indices)
    assert len(docs) == 3, "the publisher's copy is its own document, with its page"
    lead_id = item["story"]["id"]
    assert docs[own]["story"]["id"] == lead_id and docs[own]["story"]["lead"] is False
    assert docs[other]["story"]["id"] != lead_id
    es.indices.refresh(index=indices.articles)
    assert es.get(index=indices.articles, id=lead_id)["_source"]["story"]["size"] == 2
