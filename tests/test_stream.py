"""newsmon_stream under a real Airflow (`newsmon airflow start`): a new feed item becomes one email, with no timed run.

The monitor DAG stays paused, so only the asset watcher's trigger (in the triggerer)
can have polled the feed and started the run that mailed the alert. One test: starting
Airflow costs most of it (about 2 minutes on a quiet 2-core machine; the waits allow
for a machine many times over-committed).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.pages import EXPORT_CONTROL_PARAGRAPHS, UNRELATED_PARAGRAPHS, article_html, rss
from tests.servers import FeedServer, SmtpServer
from tests.standalone import airflow_standalone
from tests.test_alerts import write_rules

TITLE = "中方对日实施两用物项出口管制"


def wait_for(what: str, check: object, timeout: float, standalone_log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            log = standalone_log.read_text(encoding="utf-8", errors="replace")[-6000:]
            pytest.fail(f"{what} within {timeout:.0f} s; airflow's output ends:\n{log}")
        time.sleep(0.5)


@pytest.mark.timeout(1500)
def test_a_new_feed_item_is_mailed_by_the_stream_dag_and_no_feed_is_polled_before_its_interval(
    tmp_path: Path, env: Path, feed_server: FeedServer, mail_settings: SmtpServer
) -> None:
    old = {
        "title": "寒潮来袭",
        "link": feed_server.add("/news/cold.html", article_html("寒潮来袭", UNRELATED_PARAGRAPHS)),
    }
    feed_server.add("/feed.xml", rss("local", [old]))
    feed_server.add("/hourly.xml", rss("hourly", [old]))
    (env / "feeds.yaml").write_text(
        "feeds:\n"
        f"  - {{name: local, url: '{feed_server.url('/feed.xml')}', language: zh-Hans, interval_minutes: 0}}\n"
        f"  - {{name: hourly, url: '{feed_server.url('/hourly.xml')}', language: zh-Hans, interval_minutes: 60}}\n",
        encoding="utf-8",
    )
    write_rules(env)
    with airflow_standalone(tmp_path / "airflow", {**os.environ, "NEWSMON_STREAM_POLL_SECONDS": "3"}) as airflow:
        airflow.unpause("newsmon_stream")
        # The trigger's first looks queue the unrelated story (a run, no mail) and learn the ETags.
        wait_for("the trigger polled the feed twice", lambda: len(feed_server.hits("/feed.xml")) >= 2, 300, airflow.log)
        link = feed_server.add("/news/export.html", article_html(TITLE, EXPORT_CONTROL_PARAGRAPHS))
        feed_server.add("/feed.xml", rss("local", [{"title": TITLE, "link": link}, old]))
        wait_for("the alert was mailed", lambda: mail_settings.messages, 420, airflow.log)
        time.sleep(5)  # a second, doubled mail would arrive about now
    ((rcpts, message),) = mail_settings.messages
    assert sorted(rcpts) == ["chief@example.org", "desk@example.org"]
    body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert TITLE in body and link in body and "寒潮" not in body
    polls = feed_server.hits("/feed.xml")
    assert all(h.get("if-none-match") for h in polls[1:]), "every poll after the first is conditional"
    assert len(feed_server.hits("/hourly.xml")) == 1, "a feed with a 60-minute interval is polled once"
