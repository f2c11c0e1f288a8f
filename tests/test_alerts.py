"""Alert emails through a real SMTP server (aiosmtpd), a real ES and a loopback feed server."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from elasticsearch import Elasticsearch, helpers
from typer.testing import CliRunner

from pipeline.alert import Alerter
from pipeline.cli import app
from pipeline.config import load_settings
from pipeline.es import Indices
from pipeline.lifecycle import process_entries
from pipeline.mail import SmtpConfig
from pipeline.repeats import SIMILAR_PER_ARTICLE, _related
from pipeline.run import alert_stage, configured_feeds, poll_stage
from pipeline.watchlist import load_watchlist
from tests.pages import (
    EXPORT_CONTROL_PARAGRAPHS,
    UNRELATED_PARAGRAPHS,
    article_html,
    rss,
    write_feeds,
)
from tests.servers import FeedServer, SmtpServer

runner = CliRunner()
RULE = "jc-export"
TOKYO = ZoneInfo("Asia/Tokyo")


def write_rules(config_dir: Path, mode: str = "immediate", max_age_days: int = 3) -> None:
    digest = '    digest_at: "08:00"\n' if mode == "digest" else ""
    (config_dir / "alerts.yaml").write_text(
        "rules:\n"
        f"  - name: {RULE}\n"
        "    recipients: [desk@example.org, chief@example.org]\n"
        "    condition:\n      relevance_rules: [export_control_japan_china]\n"
        f"    mode: {mode}\n{digest}    timezone: Asia/Tokyo\n    max_age_days: {max_age_days}\n",
        encoding="utf-8",
    )


@pytest.fixture
def mail_env(env: Path, mail_settings: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEWSMON_SMTP_FROM", "newsmon@example.org")
    monkeypatch.setenv("NEWSMON_KIBANA_URL", "http://kibana.example:5601")
    write_rules(env)
    return env


def publish(
    server: FeedServer, config_dir: Path, stories: list[tuple[str, str, list[str]]], feed: str = "/feed.xml"
) -> list[str]:
    """Serve (path, title, paragraphs) articles and a feed listing them."""
    links = [server.add(path, article_html(title, paragraphs)) for path, title, paragraphs in stories]
    server.add(feed, rss("t", [{"title": t, "link": u} for (_, t, _), u in zip(stories, links, strict=True)]))
    write_feeds(config_dir, [("local", server.url(feed), "zh-Hans")])
    return links


def run_once() -> tuple[int, str]:
    result = runner.invoke(app, ["run", "--once"], catch_exceptions=False)
    return result.exit_code, result.output


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return text, html


class Markup(HTMLParser):
    """Collects the tags and attributes a mail client would render."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [name for name, _ in attrs]


def test_new_relevant_article_gives_exactly_one_clear_email(
    mail_env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
    smtp_server: SmtpServer,
) -> None:
    (link,) = publish(feed_server, mail_env, [("/a.html", "中方对日实施两用物项出口管制", EXPORT_CONTROL_PARAGRAPHS)])
    code, output = run_once()
    assert code == 0, output
    assert len(smtp_server.messages) == 1
    rcpts, message = smtp_server.messages[0]
    assert sorted(rcpts) == ["chief@example.org", "desk@example.org"]
    assert "example.org" not in str(message["To"]) and message["Bcc"] is None, "no recipient sees the others"
    assert message["Subject"].startswith(f"[newsmon] {RULE}: 1 new article")
    # Watch terms first (most common across the email's stories), then by id; materials such as
    # gallium are not terms of the rule (an export-control measure is), so they are not listed.
    assert message["Subject"] == (
        f"[newsmon] {RULE}: 1 new article — 两用物项 (dual-use items), 出口管制 (export controls), "
        "商务部 (MOFCOM, Chinese Ministry of Commerce)"
    )
    text, html = parts(message)
    assert link in text and f'href="{link}"' in html
    assert "<mark>两用物项</mark>" in html and "<mark>出口管制</mark>" in html
    assert "[两用物项]" in text and "[出口管制]" in text
    # Why it is relevant: a sentence of the article, as written.
    because = [line.removeprefix("  Because: ") for line in text.splitlines() if line.startswith("  Because: ")]
    assert because and all(any(b in p for p in EXPORT_CONTROL_PARAGRAPHS) for b in because), because
    assert "http://kibana.example:5601/app/discover" in html
    assert "Asia/Tokyo" not in text and ("JST" in text)  # publication time in the recipients' zone
    assert "alerted=1" in output

    code, _ = run_once()
    assert code == 0
    assert len(smtp_server.messages) == 1, "a second run sends nothing"


def test_mail_server_down_delays_but_never_loses_or_doubles(
    mail_env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
    smtp_server: SmtpServer,
) -> None:
    es, indices = store
    publish(feed_server, mail_env, [("/a.html", "中方对日实施两用物项出口管制", EXPORT_CONTROL_PARAGRAPHS)])
    smtp_server.stop()
    code, output = run_once()
    assert code == 1
    assert "alert not sent" in output and f"127.0.0.1:{smtp_server.port}" in output
    es.indices.refresh(index=indices.alerts)
    assert es.count(index=indices.alerts, query={"term": {"kind": "sent"}})["count"] == 0

    smtp_server.refuse = True
    smtp_server.start()
    code, _ = run_once()
    assert code == 1 and smtp_server.messages == []

    smtp_server.refuse = False
    code, _ = run_once()
    assert code == 0 and len(smtp_server.messages) == 1
    code, _ = run_once()
    assert len(smtp_server.messages) == 1


def test_same_story_from_two_outlets_is_one_entry_also_reported_by(
    mail_env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
    smtp_server: SmtpServer,
) -> None:
    first = feed_server.add("/outlet-a/1.html", article_html("中方对日出口管制", EXPORT_CONTROL_PARAGRAPHS))
    # The second outlet runs the wire story with its own headline and a line of its own.
    second = feed_server.add(
        "/outlet-b/9.html", article_html("商务部:对日两用物项管制", [*EXPORT_CONTROL_PARAGRAPHS, "本报综合报道。"])
    )
    feed_server.add("/a.xml", rss("a", [{"title": "a", "link": first}]))
    feed_server.add("/b.xml", rss("b", [{"title": "b", "link": second}]))
    write_feeds(
        mail_env,
        [("outlet-a", feed_server.url("/a.xml"), "zh-Hans"), ("outlet-b", feed_server.url("/b.xml"), "zh-Hans")],
    )
    assert run_once()[0] == 0
    ((_, message),) = smtp_server.messages
    text, html = parts(message)
    assert message["Subject"].startswith(f"[newsmon] {RULE}: 1 new article ")
    assert len(re.findall(r"^\* ", text, re.M)) == 1
    assert "Also reported by: outlet-" in text and "Also reported by: outlet-" in html


def test_irrelevant_article_and_seeds_send_nothing(
    mail_env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
    smtp_server: SmtpServer,
) -> None:
    runner.invoke(app, ["seeds", "load"], catch_exceptions=False)
    publish(feed_server, mail_env, [("/w.html", "寒潮来袭", UNRELATED_PARAGRAPHS)])
    assert run_once()[0] == 0
    assert smtp_server.messages == []


def test_hostile_titles_and_bodies_arrive_inert(
    mail_env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
    smtp_server: SmtpServer,
) -> None:
    title = '出口管制<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    body = [*EXPORT_CONTROL_PARAGRAPHS, '<iframe src="javascript:alert(3)"></iframe> 两用物项 "><svg onload=alert(4)>']
    # Entities in the page decode to live-looking markup in the extracted text.
    html_page = article_html(title, body)
    publish_link = feed_server.add("/x.html", html_page)
    feed_server.add("/feed.xml", rss("t", [{"title": title, "link": publish_link}]))
    write_feeds(mail_env, [("local", feed_server.url("/feed.xml"), "zh-Hans")])
    assert run_once()[0] == 0
    ((_, message),) = smtp_server.messages
    _, html = parts(message)
    parser = Markup()
    parser.feed(html)
    assert not {"script", "img", "iframe", "svg"} & set(parser.tags)
    assert not [a for a in parser.attrs if a.startswith("on")]
    assert "&lt;script&gt;" in html


def test_digest_sends_once_at_the_period_boundary(
    mail_env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
    smtp_server: SmtpServer,
) -> None:
    es, indices = store
    write_rules(mail_env, mode="digest")
    settings = load_settings()
    smtp = SmtpConfig.from_settings(settings)
    feeds = configured_feeds
    # The clock is injected: two runs inside today's period (after 08:00 Tokyo), one after the next 08:00.
    day = datetime.now(UTC).astimezone(TOKYO).date() - timedelta(days=1)
    before, later = (datetime(day.year, day.month, day.day, h, tzinfo=TOKYO) for h in (9, 15))
    boundary = datetime(day.year, day.month, day.day, 8, 30, tzinfo=TOKYO) + timedelta(days=1)

    publish(feed_server, mail_env, [("/d1.html", "对日出口管制一", EXPORT_CONTROL_PARAGRAPHS)], feed="/d.xml")
    poll_stage(settings, es, indices, feeds(settings))
    process_entries(settings, es, indices)
    assert alert_stage(settings, es, indices, smtp, now=before)["emails"] == 0
    publish(
        feed_server,
        mail_env,
        [
            ("/d1.html", "对日出口管制一", EXPORT_CONTROL_PARAGRAPHS),
            ("/d2.html", "对日出口管制二", [p + "(续)" for p in UNRELATED_PARAGRAPHS + EXPORT_CONTROL_PARAGRAPHS]),
        ],
        feed="/d.xml",
    )
    poll_stage(settings, es, indices, feeds(settings))
    process_entries(settings, es, indices)
    assert alert_stage(settings, es, indices, smtp, now=later)["emails"] == 0
    assert smtp_server.messages == []
    assert alert_stage(settings, es, indices, smtp, now=boundary)["emails"] == 1
    ((_, message),) = smtp_server.messages
    # Both reports are in the digest; they tell one story, so the second is listed under the first.
    text, _ = parts(message)
    assert "/d1.html" in text and "/d2.html" in text
    assert alert_stage(settings, es, indices, smtp, now=boundary)["emails"] == 0


def test_without_smtp_alerts_go_to_the_outbox_and_preview_sends_nothing(
    env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
) -> None:
    es, indices = store
    write_rules(env)
    publish(feed_server, env, [("/a.html", "中方对日实施两用物项出口管制", EXPORT_CONTROL_PARAGRAPHS)])
    runner.invoke(app, ["poll"], catch_exceptions=False)
    settings = load_settings()
    process_entries(settings, es, indices)

    preview = runner.invoke(app, ["alerts", "preview", "--rule", RULE], catch_exceptions=False)
    assert preview.exit_code == 0 and "中方对日实施两用物项出口管制" in preview.output
    es.indices.refresh(index=indices.alerts)
    assert es.count(index=indices.alerts)["count"] == 0
    assert not settings.alert_outbox.exists()

    code, output = run_once()
    assert code == 0
    emls = list(settings.alert_outbox.glob("*.eml"))
    assert len(emls) == 1 and str(settings.alert_outbox) in output.replace("\n", "")
    saved = email.message_from_bytes(emls[0].read_bytes(), policy=email.policy.default)
    assert saved["Subject"].startswith(f"[newsmon] {RULE}: 1 new article")
    assert "中方对日实施两用物项出口管制" in parts(saved)[0]  # type: ignore[arg-type]
    run_once()
    assert len(list(settings.alert_outbox.glob("*.eml"))) == 1


def test_the_same_story_from_another_outlet_a_run_later_is_listed_once_as_new_coverage(
    mail_env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer, smtp_server: SmtpServer
) -> None:
    es, indices = store
    first = feed_server.add("/a/1.html", article_html("中方对日出口管制", EXPORT_CONTROL_PARAGRAPHS))
    feed_server.add("/a.xml", rss("a", [{"title": "a", "link": first}]))
    write_feeds(mail_env, [("outlet-a", feed_server.url("/a.xml"), "zh-Hans")])
    assert run_once()[0] == 0
    assert len(smtp_server.messages) == 1

    later = feed_server.add(
        "/b/7.html", article_html("转载:对日两用物项管制", [*EXPORT_CONTROL_PARAGRAPHS, "来源:外电。"])
    )
    other = feed_server.add("/b/8.html", article_html("日方回应", story_paragraphs()))
    # The article mailed, under a second address of its site (loopback: every outlet's): no news.
    copy = feed_server.add("/a/print/1.html", article_html("中方对日出口管制", EXPORT_CONTROL_PARAGRAPHS))
    links = [{"title": "b", "link": later}, {"title": "c", "link": other}, {"title": "d", "link": copy}]
    feed_server.add("/b.xml", rss("b", links))
    write_feeds(
        mail_env,
        [("outlet-a", feed_server.url("/a.xml"), "zh-Hans"), ("outlet-b", feed_server.url("/b.xml"), "zh-Hans")],
    )
    assert run_once()[0] == 0
    assert len(smtp_server.messages) == 2
    text, _ = parts(smtp_server.messages[1][1])
    items, _, coverage = text.partition("New coverage of stories already sent:")
    assert "日方回应" in items and later not in items, "only the new story is an item"
    assert (
        "- 中方对日出口管制 — new coverage of a story sent on " in coverage
        and f"outlet-b (zh-Hans) {later}" in coverage
        and copy not in text
    ), "the other outlet's report is new coverage; a copy of the article mailed is not"
    assert run_once()[0] == 0 and len(smtp_server.messages) == 2, "the new coverage is sent once"
    es.indices.refresh(index=indices.alerts)
    kinds = {k: es.count(index=indices.alerts, query={"term": {"kind": k}})["count"] for k in ("sent", "repeat")}
    assert kinds == {"sent": 3, "repeat": 1}, "each pair recorded once: sent, or a copy handled without mail"


def test_a_run_reads_only_the_articles_indexed_since_the_last_one(
    mail_env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer, smtp_server: SmtpServer
) -> None:
    """300 young relevant articles already alerted are not candidates again, nor compared as repeats."""
    es, indices = store
    publish(feed_server, mail_env, [("/a.html", "中方对日出口管制", EXPORT_CONTROL_PARAGRAPHS)])
    assert run_once()[0] == 0 and len(smtp_server.messages) == 1
    (sent,) = [h["_source"] for h in es.search(index=indices.articles)["hits"]["hits"]]
    # The earlier runs' work: young articles, indexed two hours ago, each alerted under its own story.
    earlier = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    ids = [f"earlier-{n}" for n in range(300)]
    copies = [sent | {"indexed_at": earlier, "story": sent["story"] | {"id": i}} for i in ids]
    records = [{"kind": "sent", "rule": RULE, "article_id": i, "sent_at": earlier} for i in ids]
    helpers.bulk(es, ({"_index": indices.articles, "_id": i, "_source": d} for i, d in zip(ids, copies, strict=True)))
    helpers.bulk(es, ({"_index": indices.alerts, "_id": f"{RULE}:{r['article_id']}", "_source": r} for r in records))
    es.indices.refresh(index=[indices.articles, indices.alerts])

    (new,) = publish(feed_server, mail_env, [("/b.html", "日方回应", story_paragraphs())], feed="/b.xml")
    settings = load_settings()
    poll_stage(settings, es, indices, configured_feeds(settings))
    assert process_entries(settings, es, indices)["indexed"] == 1
    alerter = Alerter(
        settings,
        es,
        indices,
        load_watchlist(settings.config_file("watchlist.yaml")),
        SmtpConfig.from_settings(settings),
    )
    rule, now = alerter.rule(RULE), datetime.now(UTC)
    found = alerter._found(rule, now)
    # The last run's own article is within the checkpoint's margin; none of the earlier runs' are.
    assert sorted(doc["url"] for _, doc in found) == sorted([sent["url"], new]), "only the recent ones"
    assert len(_related(es, indices, found, now - rule.max_age)) <= (SIMILAR_PER_ARTICLE + 1) * len(found), (
        "not all 300 sent"
    )
    assert alert_stage(settings, es, indices)["alerted"] == 1
    assert new in parts(smtp_server.messages[1][1])[0]


def story_paragraphs() -> list[str]:
    """A different relevant story: another measure, on another day (a report of Japan's answer to
    the ban would be the ban's own story, as tests/data/articles labels events)."""
    return [
        "2月24日,中国商务部宣布将三菱重工等20家日本实体列入出口管制管控名单,另将20家实体列入关注名单。",
        "日本外务省对此提出强烈抗议,要求中方撤回相关措施。",
        "被列入名单的企业表示正在评估影响,并将与客户沟通。",
    ]


def test_a_password_is_not_sent_in_clear_unless_allowed(
    mail_env: Path, store: tuple[Elasticsearch, Indices], smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSMON_SMTP_USER", "alerts")
    monkeypatch.setenv("NEWSMON_SMTP_PASSWORD", "s3cret")
    result = runner.invoke(app, ["alerts", "send"])
    assert result.exit_code == 1
    assert "NEWSMON_SMTP_SECURITY" in result.stderr and "s3cret" not in result.stderr
    assert smtp_server.messages == []
    monkeypatch.setenv("NEWSMON_SMTP_ALLOW_PLAINTEXT_LOGIN", "true")
    allowed = runner.invoke(app, ["alerts", "send"])
    assert allowed.exit_code == 0, allowed.output


def test_without_smtp_host_or_outbox_sending_fails_naming_both_settings(
    env: Path, store: tuple[Elasticsearch, Indices], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEWSMON_ALERT_OUTBOX")
    write_rules(env)
    result = runner.invoke(app, ["alerts", "send"])
    assert result.exit_code == 1
    assert "NEWSMON_SMTP_HOST" in result.stderr and "NEWSMON_ALERT_OUTBOX" in result.stderr
    settings = load_settings()
    assert not (settings.var_dir / "outbox").exists()
