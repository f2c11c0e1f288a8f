"""Exactly once under overlap and crashes: real senders in separate processes, a slow real SMTP server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from typer.testing import CliRunner

from pipeline.alert import Alerter, candidates
from pipeline.cli import app
from pipeline.config import PROJECT_ROOT, load_settings
from pipeline.delivery import Delivery, deliver_batch
from pipeline.es import Indices
from pipeline.lifecycle import process_entries
from pipeline.mail import SmtpConfig
from pipeline.run import configured_feeds, poll_stage
from pipeline.watchlist import load_watchlist
from tests.pages import EXPORT_CONTROL_PARAGRAPHS, article_html, rss, write_feeds
from tests.servers import FeedServer, SmtpServer
from tests.test_alerts import story_paragraphs

runner = CliRunner()
SLOW_SMTP = 3.0  # seconds the server takes to answer each message
RULES = ("desk", "chief")


def write_rules(config_dir: Path, names: tuple[str, ...]) -> None:
    rules = "".join(
        f"  - name: {name}\n    recipients: [{name}@example.org]\n"
        "    condition:\n      relevance_rules: [export_control_japan_china]\n"
        "    mode: immediate\n    timezone: Asia/Tokyo\n"
        for name in names
    )
    (config_dir / "alerts.yaml").write_text(f"rules:\n{rules}", encoding="utf-8")


@pytest.fixture
def articles(
    env: Path, mail_settings: SmtpServer, store: tuple[Elasticsearch, Indices], feed_server: FeedServer
) -> list[str]:
    """Three new relevant articles, indexed and waiting for their alerts."""
    bodies = [EXPORT_CONTROL_PARAGRAPHS, story_paragraphs(), [*story_paragraphs()[:2], *EXPORT_CONTROL_PARAGRAPHS[2:]]]
    published = datetime.now(UTC).isoformat(timespec="seconds")  # today's news, as its page says
    links = [
        feed_server.add(f"/n/{i}.html", article_html(f"对日出口管制 {i}", body, published=published))
        for i, body in enumerate(bodies)
    ]
    feed_server.add("/feed.xml", rss("t", [{"title": str(i), "link": u} for i, u in enumerate(links)]))
    write_feeds(env, [("local", feed_server.url("/feed.xml"), "zh-Hans")])
    settings = load_settings()
    es, indices = store
    poll_stage(settings, es, indices, configured_feeds(settings))
    assert process_entries(settings, es, indices)["indexed"] == 3
    return links


def sender() -> subprocess.Popen[str]:
    """`newsmon alerts send` in a process of its own, with this test's environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "alerts", "send"],
        cwd=PROJECT_ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def records(es: Elasticsearch, indices: Indices) -> list[dict]:
    """The (rule, article) pairs' records, without the rules' checkpoints."""
    es.indices.refresh(index=indices.alerts)
    query = {"bool": {"must_not": {"term": {"kind": "checkpoint"}}}}
    hits = es.search(index=indices.alerts, size=100, query=query)["hits"]["hits"]
    return [h["_source"] for h in hits]


def test_two_senders_started_together_send_one_email_per_rule(
    env: Path,
    articles: list[str],
    store: tuple[Elasticsearch, Indices],
    smtp_server: SmtpServer,
) -> None:
    es, indices = store
    write_rules(env, RULES)
    smtp_server.delay = SLOW_SMTP
    first, second = sender(), sender()
    outputs = [p.communicate(timeout=120)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs

    by_rule = Counter(rcpts[0].split("@")[0] for rcpts, _ in smtp_server.messages)
    assert by_rule == {"desk": 1, "chief": 1}, outputs
    for rcpts, message in smtp_server.messages:
        assert message["Subject"].startswith(f"[newsmon] {rcpts[0].split('@')[0]}: ")
        assert all(link in message.get_body(("plain",)).get_content() for link in articles)  # type: ignore[union-attr]
    sent = [r for r in records(es, indices) if r["kind"] == "sent"]
    assert sorted((r["rule"], r["article_id"]) for r in sent) == sorted({(r["rule"], r["article_id"]) for r in sent}), (
        "one record per pair"
    )
    assert len(sent) == 6
    assert {r["message_id"] for r in sent} == {m["Message-ID"] for _, m in smtp_server.messages}


def test_a_sender_killed_before_recording_is_resent_once_after_its_lease_with_the_same_message_id(
    env: Path,
    articles: list[str],
    store: tuple[Elasticsearch, Indices],
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    es, indices = store
    write_rules(env, RULES[:1])
    monkeypatch.setenv("NEWSMON_ALERT_LEASE_SECONDS", "8")
    smtp_server.delay = SLOW_SMTP
    victim = sender()
    deadline = time.monotonic() + 60
    while not smtp_server.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    # The server has the message; the sender has not heard "250" yet, so nothing is recorded as sent.
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    assert len(smtp_server.messages) == 1
    ((_, original),) = smtp_server.messages
    held = records(es, indices)
    assert {r["kind"] for r in held} == {"reserved"} and len(held) == 3

    smtp_server.delay = 0.0
    within = runner.invoke(app, ["alerts", "send"], catch_exceptions=False)
    assert within.exit_code == 0 and "held=3" in within.output
    assert len(smtp_server.messages) == 1, "nothing is resent while the lease runs"

    lease_until = max(datetime.fromisoformat(r["lease_until"]) for r in held)
    time.sleep(max(0.0, (lease_until - datetime.now(UTC)).total_seconds()) + 0.5)
    after = runner.invoke(app, ["alerts", "send"], catch_exceptions=False)
    assert after.exit_code == 0, after.output
    assert len(smtp_server.messages) == 2
    resent = smtp_server.messages[1][1]
    assert resent["Message-ID"] == original["Message-ID"]
    assert resent["Subject"] == original["Subject"]
    assert {r["kind"] for r in records(es, indices)} == {"sent"}

    assert runner.invoke(app, ["alerts", "send"], catch_exceptions=False).exit_code == 0
    assert len(smtp_server.messages) == 2


def test_senders_that_both_saw_a_pair_free_cannot_both_send_it(
    env: Path, articles: list[str], store: tuple[Elasticsearch, Indices], smtp_server: SmtpServer
) -> None:
    """The window between reading the records and reserving: op_type=create lets one sender win."""
    es, indices = store
    write_rules(env, RULES[:1])
    settings = load_settings()
    watchlist = load_watchlist(settings.config_file("watchlist.yaml"))
    alerter = Alerter(settings, es, indices, watchlist, SmtpConfig.from_settings(settings))
    (rule,) = alerter.rules
    now = datetime.now(UTC)
    found = candidates(es, indices, rule, now)
    assert len(found) == 3
    # Both looked before either reserved; the second also saw one article the first did not.
    (first,) = alerter.ledger.batches(rule.name, found[:2], [], {}, None)
    (second,) = alerter.ledger.batches(rule.name, found, [], {}, None)
    compose, send = alerter._compose(rule, {}), alerter._send
    a = deliver_batch(alerter.ledger, rule.name, list(rule.recipients), first, None, now, compose, send)
    b = deliver_batch(alerter.ledger, rule.name, list(rule.recipients), second, None, now, compose, send)
    assert (a.outcome, a.articles) == (Delivery.SENT, 2)
    assert (b.outcome, b.articles, b.held) == (Delivery.SENT, 1, 2), "only the pair nobody held"
    assert len(smtp_server.messages) == 2
    assert b.message_id != second.message_id, "a different set of articles is a different message"
    assert smtp_server.messages[1][1]["Message-ID"] == b.message_id
    assert found[2][1]["url"] in smtp_server.messages[1][1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert sorted(r["message_id"] for r in records(es, indices)) == sorted([a.message_id] * 2 + [b.message_id])
