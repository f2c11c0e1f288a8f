"""Hostile and broken inputs: bounded work, trustworthy dates, quality gate, crash safety."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil
import pytest
from elasticsearch import Elasticsearch
from typer.testing import CliRunner

from pipeline.config import PROJECT_ROOT, Settings
from pipeline.dates import choose_published, parse_date
from pipeline.es import Indices
from pipeline.extract import quality_problem
from pipeline.fetch import FetchError, FetchReason, GuardedBackend, checked_address, fetch_pages
from pipeline.models import FeedEntry, article_id
from pipeline.urls import canonical_url
from tests import faults
from tests.pages import EXPORT_CONTROL_PARAGRAPHS, article_html, feed_docs, rss, run_once, write_feeds
from tests.servers import FeedServer, SmtpServer
from tests.test_alerts import write_rules

runner = CliRunner()
SHANGHAI, TOKYO = ZoneInfo("Asia/Shanghai"), ZoneInfo("Asia/Tokyo")


def story(i: int) -> list[str]:
    return [f"({i}) {p}" for p in EXPORT_CONTROL_PARAGRAPHS]


@pytest.mark.timeout(240)  # a hang bound, not a speed target: the page never ends unless the run cuts it
def test_never_ending_page_and_pathological_extraction_are_cut_and_the_run_goes_on(
    env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    es, indices = store
    monkeypatch.setenv("NEWSMON_FETCH_TOTAL_TIMEOUT", "2")
    monkeypatch.setenv("NEWSMON_EXTRACT_TIMEOUT", "0.5")
    monkeypatch.setenv("NEWSMON_WORKERS", "2")
    good = feed_server.add("/good.html", article_html("正常", story(1)))
    slow = feed_server.add("/slow.html", b"<html><body><p>", trickle=0.05)
    # About 4 MB of tiny paragraphs: trafilatura needs far longer than half a second for it.
    heavy = feed_server.add("/heavy.html", article_html("重", ["两用物项 " + str(i) for i in range(120_000)]))
    feed_server.add(
        "/feed.xml",
        rss(
            "t",
            [
                {"title": "good", "link": good},
                {"title": "slow", "link": slow, "summary": "慢"},
                {"title": "heavy", "link": heavy, "summary": "重"},
            ],
        ),
    )
    write_feeds(env, [("t", feed_server.url("/feed.xml"), "zh-Hans")])
    with faults.trial("never-ending page, pathological extraction", inputs=2):
        faults.run_once()
    faults.account(faults.expected_ids([good, slow, heavy]), faults.indexed_ids(es, indices))
    docs = feed_docs(es, indices)
    assert docs[canonical_url(good)]["extraction"] == "ok"
    assert docs[canonical_url(slow)]["extraction_reason"] == "timeout"
    assert docs[canonical_url(heavy)]["extraction"] == "failed"
    assert docs[canonical_url(heavy)]["extraction_reason"] == "timeout"


def test_gzip_bomb_stops_at_the_cap_with_bounded_memory(
    env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
) -> None:
    es, indices = store
    bomb = gzip.compress(b"<html><body><p>" + b"A" * 1_000_000_000, compresslevel=9)
    assert len(bomb) < 2_000_000
    link = feed_server.add("/bomb.html", bomb, headers={"Content-Encoding": "gzip"})
    feed_server.add("/feed.xml", rss("t", [{"title": "bomb", "link": link, "summary": "炸弹"}]))
    write_feeds(env, [("t", feed_server.url("/feed.xml"), "en")])
    before = psutil.Process().memory_info().rss
    with faults.trial("gzip bomb"):
        faults.run_once()
    grown = psutil.Process().memory_info().rss - before
    faults.account(faults.expected_ids([link]), faults.indexed_ids(es, indices))
    doc = feed_docs(es, indices)[canonical_url(link)]
    assert doc["fetch"]["truncated"] is True and doc["fetch"]["bytes"] == 5_000_000
    assert grown < 200_000_000, f"RSS grew by {grown / 1e6:.0f} MB"


def test_an_entity_bomb_feed_fails_with_its_reason_and_nothing_is_indexed(
    env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
) -> None:
    es, indices = store
    decl = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">' for i in range(1, 10)
    )
    ref = "&lol9;"
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss [{decl}]><rss version="2.0"><channel><title>{ref}</title>'
        f"<item><title>{ref}</title><link>{feed_server.url('/x.html')}</link></item></channel></rss>"
    )
    feed_server.add("/evil.xml", body)
    write_feeds(env, [("evil", feed_server.url("/evil.xml"), "en")])
    before = psutil.Process().memory_info().rss
    with faults.trial("xml entity bomb"):
        faults.run_once()
    faults.account([], faults.indexed_ids(es, indices))
    assert psutil.Process().memory_info().rss - before < 100_000_000
    state = es.get(index=indices.feeds, id="evil")["_source"]
    assert state["last_status"] == "failed" and "xml_entity_bomb" in state["last_error"]
    assert feed_docs(es, indices) == {}


@pytest.mark.parametrize(
    ("text", "zone", "expected"),
    [
        ("2026年1月6日 16:20", SHANGHAI, datetime(2026, 1, 6, 16, 20, tzinfo=SHANGHAI)),
        ("2026-01-06 16:20", TOKYO, datetime(2026, 1, 6, 16, 20, tzinfo=TOKYO)),
        ("2026年01月06日16时20分", SHANGHAI, datetime(2026, 1, 6, 16, 20, tzinfo=SHANGHAI)),
        ("2026/1/6", TOKYO, datetime(2026, 1, 6, tzinfo=TOKYO)),
        ("2026-01-06T16:20:00+09:00", SHANGHAI, datetime(2026, 1, 6, 7, 20, tzinfo=UTC)),
        ("Tue, 06 Jan 2026 08:20:00 GMT", TOKYO, datetime(2026, 1, 6, 8, 20, tzinfo=UTC)),
        ("not a date", TOKYO, None),
    ],
)
def test_dates_parse_in_cjk_forms_and_take_the_feed_zone(text: str, zone: ZoneInfo, expected: datetime | None) -> None:
    parsed = parse_date(text, zone)
    assert parsed == expected
    if parsed:
        assert parsed.utcoffset() is not None


def test_future_dates_are_clamped_and_disagreement_flagged() -> None:
    fetched = datetime(2026, 1, 10, tzinfo=UTC)
    value, source, flags = choose_published(fetched + timedelta(days=3), None, fetched)
    assert (value, source, flags) == (fetched, "page", ["future_clamped"])
    page, feed = datetime(2026, 1, 6, tzinfo=UTC), datetime(2026, 1, 9, tzinfo=UTC)
    assert choose_published(page, feed, fetched) == (page, "page", ["page_feed_disagree"])
    assert choose_published(None, feed, fetched) == (feed, "feed", [])
    assert choose_published(None, None, fetched) == (fetched, "fetched", [])


def test_indexed_dates_come_from_the_page_in_the_feed_zone(
    env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
) -> None:
    es, indices = store
    page = feed_server.add("/dated.html", article_html("日期", story(1), published="2026年1月6日 16:20"))
    undated = feed_server.add("/undated.html", article_html("无日期", story(2)))
    future = format_datetime(datetime.now(UTC) + timedelta(days=30))
    feed_server.add(
        "/feed.xml",
        rss(
            "t",
            [
                {"title": "a", "link": page, "pubDate": "Fri, 09 Jan 2026 00:00:00 GMT"},
                {"title": "b", "link": undated, "pubDate": future},
            ],
        ),
    )
    write_feeds(env, [("t", feed_server.url("/feed.xml"), "zh-Hans")])
    run_once()
    docs = feed_docs(es, indices)
    dated = docs[canonical_url(page)]
    assert dated["published_at"] == "2026-01-06T16:20:00+08:00"
    assert dated["published_at_source"] == "page" and "page_feed_disagree" in dated["date_flags"]
    clamped = docs[canonical_url(undated)]
    assert clamped["published_at_source"] == "feed" and clamped["date_flags"] == ["future_clamped"]
    assert datetime.fromisoformat(clamped["published_at"]) <= datetime.now(UTC)


def test_old_article_found_late_is_indexed_but_not_alerted(
    env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
    mail_settings: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    es, indices = store
    write_rules(env)
    old = format_datetime(datetime.now(UTC) - timedelta(days=10))
    link = feed_server.add("/old.html", article_html("旧闻", story(1)))
    feed_server.add("/feed.xml", rss("t", [{"title": "old", "link": link, "pubDate": old}]))
    write_feeds(env, [("t", feed_server.url("/feed.xml"), "zh-Hans")])
    run_once()
    doc = feed_docs(es, indices)[canonical_url(link)]
    assert doc["relevance"]["relevant"] is True
    assert mail_settings.messages == []


LIST_PAGE = (
    "<html><head><title>国际新闻</title></head><body><ul>"
    + "".join(f'<li><a href="/n/{i}.html">日本出口管制新闻标题第{i}条,中方回应两用物项问题</a></li>' for i in range(60))
    + "</ul></body></html>"
)
CONSENT = (
    "<html><head><title>Before you continue</title></head><body><div><h1>We use cookies</h1>"
    "<p>We use cookies and data to deliver and maintain our services. If you choose to accept all cookies, "
    "we will also use cookies to develop and improve new services.</p><button>Accept all</button>"
    "<button>Reject all</button></div></body></html>"
)
SOFT_404 = (
    "<html><head><title>页面不存在 - 示例新闻网</title></head><body><h1>404 页面不存在</h1>"
    "<p>抱歉,您访问的页面不存在或已被删除。请返回首页继续浏览其他新闻内容。</p></body></html>"
)


@pytest.mark.parametrize(
    ("page", "reason"), [(LIST_PAGE, "list_page"), (CONSENT, "consent_wall"), (SOFT_404, "soft_404")]
)
def test_list_pages_consent_walls_and_soft_404s_are_not_bodies(
    env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
    page: str,
    reason: str,
) -> None:
    es, indices = store
    link = feed_server.add("/p.html", page)
    feed_server.add("/feed.xml", rss("t", [{"title": "标题", "link": link, "summary": "摘要:中方对日出口管制。"}]))
    write_feeds(env, [("t", feed_server.url("/feed.xml"), "zh-Hans")])
    with faults.trial(reason):
        faults.run_once()
    faults.account(faults.expected_ids([link]), faults.indexed_ids(es, indices))
    doc = feed_docs(es, indices)[canonical_url(link)]
    assert doc["extraction"] == "fallback"
    assert doc["extraction_reason"] == reason
    assert doc["body"] == "摘要:中方对日出口管制。"


def _run_killed(when: str, es: Elasticsearch, indices: Indices, server: FeedServer, slow_path: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "--once"],
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if when == "fetch" and server.hits(slow_path):
                break
            if when == "index" and es.indices.exists(index=indices.articles):
                es.indices.refresh(index=indices.articles)
                if es.count(index=indices.articles)["count"] >= 2:
                    break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        else:
            pytest.fail(f"never reached the {when} stage")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("when", ["fetch", "index"])
def test_a_run_killed_mid_way_is_completed_by_the_next(
    env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
    mail_settings: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    when: str,
) -> None:
    es, indices = store
    write_rules(env)
    links = [feed_server.add(f"/s/{i}.html", article_html(f"对日出口管制{i}", story(i))) for i in range(12)]
    slow = "/s/slow.html"
    links.append(feed_server.add(slow, article_html("慢", story(99)), delay=30 if when == "fetch" else 0))
    feed_server.add("/feed.xml", rss("t", [{"title": str(i), "link": u} for i, u in enumerate(links)]))
    write_feeds(env, [("t", feed_server.url("/feed.xml"), "zh-Hans")])
    if when == "index":
        monkeypatch.setenv("NEWSMON_BULK_SIZE", "1")  # index article by article, so the kill lands mid-way
    monkeypatch.setenv("NEWSMON_CLAIM_LEASE_SECONDS", "1")  # the killed run's claims expire before the next
    _run_killed(when, es, indices, feed_server, slow)
    time.sleep(1)
    es.indices.refresh(index=indices.articles)
    assert es.count(index=indices.articles)["count"] < len(links), "the kill came too late to test anything"

    feed_server.routes[slow].delay = 0
    monkeypatch.delenv("NEWSMON_BULK_SIZE", raising=False)
    with faults.trial(f"run killed at {when}"):
        faults.run_once()
        faults.run_once()
    ids = faults.indexed_ids(es, indices)
    faults.account(faults.expected_ids(links), ids)
    docs = feed_docs(es, indices)
    assert set(docs) == {canonical_url(u) for u in links}, "every entry is indexed"
    assert sorted(ids) == sorted({article_id(canonical_url(u)) for u in links}), "and none twice"
    assert len(mail_settings.messages) == 1
    es.indices.refresh(index=indices.alerts)
    assert es.count(index=indices.alerts, query={"term": {"kind": "sent"}})["count"] == len(links)


def test_a_run_killed_while_its_workers_wait_leaves_no_process_behind(env: Path, feed_server: FeedServer) -> None:
    """SIGKILL gives a run no chance to stop its pool: the forkserver and workers must notice on their own."""
    slow = feed_server.add("/slow.html", article_html("慢", story(1)), delay=120)  # the run waits here
    feed_server.add("/feed.xml", rss("t", [{"title": "慢", "link": slow}]))
    write_feeds(env, [("t", feed_server.url("/feed.xml"), "zh-Hans")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "--once"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "NEWSMON_WORKERS": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run = psutil.Process(proc.pid)
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        # Resource tracker, forkserver and two workers, the run fetching its page meanwhile.
        while len(children) < 4 or not feed_server.hits("/slow.html"):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, f"the pool never started: {children}"
            time.sleep(0.2)
            children = run.children(recursive=True)
        time.sleep(1)  # the workers' start-up is done, or well under way
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while (alive := _living(children)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive, f"outlived the killed run: {[' '.join(p.cmdline())[:120] for p in alive]}"
    finally:
        proc.kill()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


def _living(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running; an orphan that has exited may stay a zombie until init reaps it."""
    living = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            if proc.status() != psutil.STATUS_ZOMBIE:
                living.append(proc)
    return living


@pytest.mark.parametrize(
    "body",
    [
        "The two governments would not consent to Beijing's new export controls on dual-use items. " * 8,
        "日本政府は中国の輸出規制の見直し案に同意するかどうかを検討している。関係者によると結論は来週出る見通しだ。"
        * 6,
    ],
)
def test_real_reporting_that_mentions_consent_is_not_a_consent_wall(body: str) -> None:
    assert quality_problem("輸出規制", body) is None


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "private_address"),
        ("localhost", "private_address"),  # a name that resolves to loopback
        ("[::1]", "private_address"),
        ("[::ffff:127.0.0.1]", "private_address"),  # IPv4-mapped
        ("[64:ff9b::7f00:1]", "private_address"),  # NAT64
        ("[2002:7f00:1::]", "private_address"),  # 6to4
        ("[2001:0:4136:e378:8000:63bf:3fff:fdd2]", "private_address"),  # Teredo
        ("[fe80::1]", "private_address"),
        ("169.254.169.254", "private_address"),  # cloud metadata, link-local
        ("2130706433", "private_address"),  # 127.0.0.1 as one decimal number
        ("0177.0.0.1", "private_address"),  # octal
        ("0x7f.1", "private_address"),  # hex, short form
    ],
)
def test_the_address_guard_refuses_every_spelling_of_a_private_address(
    feed_server: FeedServer, tmp_path: Path, host: str, reason: str
) -> None:
    """With the guard on (as in production), a real loopback server is never reached."""
    feed_server.add("/secret.html", article_html("内部", story(1)))
    settings = Settings(var_dir=tmp_path, fetch_allow_private_hosts=False)
    link = f"http://{host}:{feed_server.port}/secret.html"
    entry = FeedEntry("t", link, link, link, "t", "", None, "zh-Hans", "Asia/Shanghai")
    ((_, result),) = asyncio.run(fetch_pages([entry], settings))
    assert isinstance(result, FetchError) and result.reason == reason, result
    assert not feed_server.hits("/secret.html")


def test_the_guard_checks_the_address_it_connects_to_and_the_port(feed_server: FeedServer, tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, fetch_allow_private_hosts=False)
    backend = GuardedBackend(settings)
    # At connect time, whatever the URL check said: the name is resolved by the guard, once.
    with pytest.raises(FetchError, match="private_address"):
        asyncio.run(backend.connect_tcp("localhost", 80))
    with pytest.raises(FetchError, match="port_refused"):
        asyncio.run(checked_address("8.8.8.8", 8080, settings))  # a literal: nothing resolved or connected
    allowed = Settings(var_dir=tmp_path, fetch_allow_private_hosts=False, fetch_allowed_ports=[8080])
    with pytest.raises(FetchError, match="private_address"):
        asyncio.run(checked_address("127.0.0.1", 8080, allowed))


def test_the_fault_tally_counts_a_crash_and_names_it_instead_of_hiding_it() -> None:
    tally = faults.Tally()
    with pytest.raises(ZeroDivisionError), tally.trial("division"):
        _ = 1 / 0
    with pytest.raises(FetchError), tally.trial("refused page", refusals=(FetchError,)):
        raise FetchError("http://x.test/", FetchReason.TOO_LARGE)
    with pytest.raises(AssertionError), tally.trial("failed expectation"):
        raise AssertionError
    with pytest.raises(faults.Crashed), tally.trial("run", inputs=2):
        faults.finished(
            subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], stdout=subprocess.PIPE, text=True)
        )
    tally.account(["a", "b", "c"], ["a", "a", "c"])
    assert dict(tally.counts) == {"tried": 5, "crashes": 2, "lost": 1, "doubled": 1}
    summary = tally.summary()
    assert "crashes: 2" in summary and "documents lost: 1, documents doubled: 1" in summary
    assert "crashed on division: ZeroDivisionError: division by zero" in summary
    assert "crashed on run: " in summary and "exited 3" in summary


@pytest.mark.parametrize(
    "target",
    [
        "http://localhost:{port}/secret.html",  # a name resolving to loopback
        "http://[::ffff:127.0.0.1]:{port}/secret.html",  # the listed address, IPv4-mapped
        "http://2130706433:{port}/secret.html",  # the listed address as one decimal number
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    ],
)
def test_a_redirect_chain_from_a_listed_host_to_a_private_address_is_refused_at_the_hop(
    feed_server: FeedServer, tmp_path: Path, target: str
) -> None:
    """The guard on, as in production; offline, the allowed first hops are a listed loopback host.

    Two hops on the listed host are followed; the third points at a private address the
    list does not name, and is refused before any connection, so the secret is never served.
    """
    feed_server.add("/secret.html", article_html("内部", story(1)))
    port = feed_server.port
    feed_server.add("/hop2", b"", status=302, etag=False, headers={"Location": target.format(port=port)})
    first = feed_server.add("/hop1", b"", status=301, etag=False, headers={"Location": "/hop2"})
    settings = Settings(
        var_dir=tmp_path,
        fetch_allow_private_hosts=False,
        fetch_allowed_hosts=["127.0.0.1"],
        fetch_allowed_ports=[port],
    )
    entry = FeedEntry("t", first, first, first, "t", "", None, "zh-Hans", "Asia/Shanghai")
    ((_, result),) = asyncio.run(fetch_pages([entry], settings))
    assert isinstance(result, FetchError) and result.reason == "private_address", result
    assert len(feed_server.hits("/hop1")) == len(feed_server.hits("/hop2")) == 1, "the listed hops were followed"
    assert not feed_server.hits("/secret.html") and not feed_server.hits("/latest/meta-data/")


def test_a_listed_host_is_fetched_with_the_guard_on(feed_server: FeedServer, tmp_path: Path) -> None:
    link = feed_server.add("/page.html", article_html("内网", story(1)))
    settings = Settings(
        var_dir=tmp_path,
        fetch_allow_private_hosts=False,
        fetch_allowed_hosts=["127.0.0.1"],
        fetch_allowed_ports=[feed_server.port],
    )
    entry = FeedEntry("t", link, link, link, "t", "", None, "zh-Hans", "Asia/Shanghai")
    ((_, result),) = asyncio.run(fetch_pages([entry], settings))
    assert not isinstance(result, Exception) and result.status_code == 200
    unlisted_port = Settings(var_dir=tmp_path, fetch_allow_private_hosts=False, fetch_allowed_hosts=["127.0.0.1"])
    ((_, refused),) = asyncio.run(fetch_pages([entry], unlisted_port))
    assert isinstance(refused, FetchError) and refused.reason == "port_refused"


FAULTS = Path(__file__).parent / "faultinject"


def newsmon_cli(*args: str | Path, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A real `newsmon` process (the fault injection is loaded at its start, and in its workers)."""
    command = [sys.executable, "-m", "pipeline", *map(str, args)]
    environ = {**os.environ, **extra_env}
    return subprocess.run(command, cwd=PROJECT_ROOT, env=environ, capture_output=True, text=True, check=False)


@pytest.mark.timeout(300)  # a hang bound, not a speed target: an uncut page would never end
def test_inspect_and_extract_cut_a_hostile_page_at_the_pipelines_limits_and_go_on(env: Path, tmp_path: Path) -> None:
    pages = {
        "hang.html": article_html("卡住", ["NEWSMON-TEST-HANG", *story(1)]),
        "blocks.html": article_html("阻塞", ["NEWSMON-TEST-BLOCKS", *story(2)]),
        "crash.html": article_html("崩溃", ["NEWSMON-TEST-SEGFAULT", *story(3)]),
        "good.html": article_html("中方对日实施两用物项出口管制", story(4)),
    }
    for name, html in pages.items():
        (tmp_path / name).write_text(html, encoding="utf-8")
    hang, blocks, crash, good = (tmp_path / name for name in pages)
    inject = {"PYTHONPATH": str(FAULTS), "NEWSMON_EXTRACT_TIMEOUT": "2", "NEWSMON_EXTRACT_WALL_TIMEOUT": "10"}

    with faults.trial("pages that hang, block or crash `newsmon inspect`", inputs=3):
        done = newsmon_cli("inspect", hang, blocks, crash, good, "--json", extra_env=inject)
    assert done.returncode == 1, done.stderr  # the hostile pages failed, each alone
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["source"] for r in results] == [str(f) for f in (hang, blocks, crash, good)], done.stdout
    assert [r["reason"] for r in results[:3]] == [
        "timeout: extraction outlived 2.0s of CPU (NEWSMON_EXTRACT_TIMEOUT); its worker was killed",
        "stalled: extraction outlived 10.0s of wall-clock time (NEWSMON_EXTRACT_WALL_TIMEOUT); its worker was killed",
        "worker_died: the page crashed the extracting process twice",
    ]
    assert (results[3]["status"], results[3]["title"]) == ("ok", "中方对日实施两用物项出口管制")
    assert results[3]["relevance"]["relevant"]

    bomb = tmp_path / "bomb.html.gz"
    bomb.write_bytes(gzip.compress(b"<html><body><p>" + b"A" * 1_000_000_000, compresslevel=9))
    with faults.trial("a page that hangs `newsmon extract`, a gzip bomb", inputs=2):
        done = newsmon_cli("extract", hang, bomb, good, extra_env=inject)
    assert done.returncode == 1
    assert f"{hang}: timeout: extraction outlived 2.0s of CPU (NEWSMON_EXTRACT_TIMEOUT)" in done.stderr
    # Read up to the cap a fetched page has, then judged as one: a single endless word is no article.
    assert f"file {bomb} cut at 5000000 bytes (NEWSMON_FETCH_MAX_BYTES)" in done.stderr
    assert f"{bomb}: too_short" in done.stderr
    assert "中方对日实施两用物项出口管制" in done.stdout
