"""Airflow: the DAG files parse, and a real dag.test() run moves a feed item into the index and one email."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from pipeline.config import PROJECT_ROOT, load_settings
from pipeline.es import Indices
from pipeline.esnode import EmbeddedNode
from tests.pages import (
    EXPORT_CONTROL_PARAGRAPHS,
    UNRELATED_PARAGRAPHS,
    article_html,
    rss,
    write_feeds,
)
from tests.servers import FeedServer, SmtpServer
from tests.test_alerts import write_rules

# Read, not imported: importing the DAG file would configure Airflow inside the test process.
FEEDS_PER_BATCH = int(
    re.search(r"^FEEDS_PER_BATCH = (\d+)", (PROJECT_ROOT / "dags" / "newsmon_monitor.py").read_text(), re.M).group(1)  # type: ignore[union-attr]
)

# A connection that is defined but cannot be parsed (its port is not a number).
BROKEN_CONNECTION = json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": "ninety-two hundred"})


def airflow(home: Path, mode: str, extra_env: dict[str, str] | None = None) -> dict:
    env = {**os.environ, **(extra_env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "tests.airflow_driver", str(home), mode],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and result, done.stdout[-3000:] + done.stderr[-5000:]
    return {**json.loads(result[-1].removeprefix("RESULT ")), "log": done.stdout + done.stderr}


def test_dag_files_import_with_expected_tasks_and_schedules(tmp_path: Path) -> None:
    result = airflow(tmp_path, "dagbag", {"NEWSMON_MONITOR_EVERY_MINUTES": "15"})
    assert result["import_errors"] == {}
    dags = result["dags"]
    assert set(dags) == {"newsmon_monitor", "newsmon_seeds", "newsmon_maintenance", "newsmon_stream"}
    monitor = dags["newsmon_monitor"]
    assert monitor["tasks"] == ["build_articles", "plan_batches", "poll", "send_alerts"]
    assert monitor["schedule"] == "0:15:00", "NEWSMON_MONITOR_EVERY_MINUTES sets the schedule"
    assert monitor["max_active_runs"] == 1 and monitor["catchup"] is False
    tasks = monitor["task_details"]
    # A mail outage is not retried (the next run sends what is pending), so it cannot hold the run slot.
    assert tasks["send_alerts"]["retries"] == 0 and tasks["poll"]["retries"] == 2
    # One failing poll batch does not hold back the articles of the others.
    assert tasks["build_articles"]["trigger_rule"] == "all_done_min_one_success"
    assert all(t["execution_timeout"] for t in tasks.values()), tasks
    stream = dags["newsmon_stream"]
    # Runs when the trigger in the triggerer queued entries; one task, as each task costs seconds to start.
    assert stream["watchers"] == [
        {
            "asset": "newsmon_new_feed_entries",
            "watcher": "newsmon_feed_poller",
            "trigger": "newsmon_airflow.triggers.NewFeedEntriesTrigger",
        }
    ]
    assert stream["tasks"] == ["build_and_alert"] and stream["max_active_runs"] == 1
    assert stream["retries"] == [0], "a retry would hold the only run slot; the monitor picks up what is left"
    assert dags["newsmon_seeds"]["schedule"] == "None"
    assert dags["newsmon_maintenance"]["tasks"] == [
        "report_feed_health",
        "retag_if_watchlist_changed",
        "retry_backed_off_feeds",
        "update_indices",
    ]
    assert dags["newsmon_maintenance"]["schedule"] == "@daily"


def test_monitor_dag_run_indexes_new_articles_and_sends_one_email(
    tmp_path: Path,
    env: Path,
    store: tuple[Elasticsearch, Indices],
    feed_server: FeedServer,
    smtp_server: SmtpServer,
) -> None:
    es, indices = store
    links = [
        feed_server.add("/news/1.html", article_html("中方对日实施两用物项出口管制", EXPORT_CONTROL_PARAGRAPHS)),
        feed_server.add("/news/2.html", article_html("寒潮来袭", UNRELATED_PARAGRAPHS)),
    ]
    feed_server.add("/feed.xml", rss("t", [{"title": str(i), "link": u} for i, u in enumerate(links)]))
    write_feeds(env, [("local", feed_server.url("/feed.xml"), "zh-Hans")])
    write_rules(env)
    es_url = os.environ["NEWSMON_ES_URL"].removeprefix("http://")
    host, port = es_url.split(":")
    connections = {
        # ES and SMTP come from Airflow connections, not from NEWSMON_* settings.
        "NEWSMON_ES_URL": "http://127.0.0.1:9",
        "AIRFLOW_CONN_ELASTICSEARCH_DEFAULT": json.dumps(
            {"conn_type": "http", "host": host, "port": int(port), "schema": "http"}
        ),
        "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": smtp_server.port,
                "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "airflow@example.org"},
            }
        ),
    }
    result = airflow(tmp_path / "airflow", "newsmon_monitor", connections)
    first, second = result["runs"]
    assert first["state"] == "success" and second["state"] == "success"
    assert first["summary"]["poll"]["new"] == 2
    assert first["summary"]["articles"]["indexed"] == 2
    assert first["summary"]["alerts"] == {"emails": 1, "alerted": 1, "held": 0}
    assert second["summary"]["poll"]["new"] == 0 and second["summary"]["alerts"]["emails"] == 0

    es.indices.refresh(index=indices.articles)
    hits = es.search(index=indices.articles, size=10, query={"term": {"source.kind": "feed"}})["hits"]["hits"]
    assert len(hits) == 2
    tagged = [h["_source"] for h in hits if h["_source"]["relevance"]["relevant"]]
    assert len(tagged) == 1 and "dual_use_items" in tagged[0]["entity_ids"]
    assert len(smtp_server.messages) == 1
    ((_, message),) = smtp_server.messages
    assert message["From"] == "airflow@example.org"


def test_unreadable_connection_fails_at_once_and_ops_are_mailed_with_env_only_smtp(
    tmp_path: Path, env: Path, smtp_server: SmtpServer
) -> None:
    write_rules(env)
    settings_only = {
        # No smtp_default: the ops mail must go out through NEWSMON_SMTP_*.
        "NEWSMON_SMTP_HOST": "127.0.0.1",
        "NEWSMON_SMTP_PORT": str(smtp_server.port),
        "NEWSMON_SMTP_FROM": "newsmon@example.org",
        "NEWSMON_OPS_EMAIL": "ops@example.org",
        "AIRFLOW__API__BASE_URL": "http://airflow.example:8080",
        "AIRFLOW_CONN_ELASTICSEARCH_DEFAULT": BROKEN_CONNECTION,
        "KEEP_RETRIES": "1",
        "RUNS": "1",
    }
    ((run,),) = [airflow(tmp_path / "airflow", "newsmon_monitor", settings_only)["runs"]]
    assert run["state"] == "failed"
    assert run["tasks"]["plan_batches"] == {"state": "failed", "try_number": 1}, "a config error is not retried"
    ((rcpts, message),) = smtp_server.messages
    assert rcpts == ["ops@example.org"]
    assert message["Subject"].startswith("[newsmon] newsmon_monitor.plan_batches failed: ")
    body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "elasticsearch_default cannot be read" in body
    assert "Log:     http://airflow.example:8080/dags/newsmon_monitor/runs/" in body
    assert "/tasks/plan_batches" in body


def test_a_mail_outage_ends_the_run_at_once_and_the_next_run_sends_the_alert_and_the_held_ops_mail(
    tmp_path: Path, env: Path, feed_server: FeedServer, smtp_server: SmtpServer
) -> None:
    """The one mail server drops the alert and then the ops mail about it. The run ends without a
    retry of send_alerts; the next run, with the server back, tells ops first and sends the alert."""
    link = feed_server.add("/news/1.html", article_html("中方对日实施两用物项出口管制", EXPORT_CONTROL_PARAGRAPHS))
    feed_server.add("/feed.xml", rss("t", [{"title": "0", "link": link}]))
    write_feeds(env, [("local", feed_server.url("/feed.xml"), "zh-Hans")])
    write_rules(env)
    smtp_server.drop_next = 2
    extra = {
        "NEWSMON_SMTP_HOST": "127.0.0.1",
        "NEWSMON_SMTP_PORT": str(smtp_server.port),
        "NEWSMON_OPS_EMAIL": "ops@example.org",
        "AIRFLOW__API__BASE_URL": "http://airflow.example:8080",
        "KEEP_RETRIES": "1",  # the DAG's own retries: send_alerts must not hold the slot retrying
    }
    result = airflow(tmp_path / "airflow", "newsmon_monitor", extra)
    outage, after = result["runs"]
    assert outage["state"] == "failed"
    assert outage["tasks"]["build_articles"]["state"] == "success"
    assert outage["tasks"]["send_alerts"] == {"state": "failed", "try_number": 1}, outage["tasks"]
    server = f"127.0.0.1:{smtp_server.port}"
    assert (
        f"ops mail to ops@example.org about newsmon_monitor.send_alerts not sent, mail server {server}"
        in (result["log"])
    )
    assert after["state"] == "success"
    assert after["summary"]["alerts"] == {"emails": 1, "alerted": 1, "held": 0}, "the pending pair went out"
    (ops_rcpts, ops), (alert_rcpts, _) = smtp_server.messages
    assert ops_rcpts == ["ops@example.org"] and sorted(alert_rcpts) == ["chief@example.org", "desk@example.org"]
    assert ops["Subject"].startswith("[newsmon] newsmon_monitor.send_alerts failed: RuntimeError: "), ops["Subject"]
    body = ops.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"SMTP {server} did not take the message" in body
    assert "This mail was held from " in body
    assert "Log:     http://airflow.example:8080/dags/newsmon_monitor/runs/" in body


def test_without_any_elasticsearch_a_task_fails_naming_the_settings_and_starts_no_node(
    tmp_path: Path, env: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The old fallback started an embedded node here and the run went green.
    monkeypatch.delenv("NEWSMON_ES_URL")
    default_node = EmbeddedNode(load_settings())
    assert default_node.info() is None, "a default node runs already: this test cannot tell"
    extra = {"NEWSMON_SMTP_HOST": "127.0.0.1", "NEWSMON_SMTP_PORT": str(smtp_server.port), "RUNS": "1"}
    ((run,),) = [airflow(tmp_path / "airflow", "newsmon_monitor", extra)["runs"]]
    assert default_node.info() is None, "neither the task nor its ops mail callback started a node"
    assert run["tasks"]["plan_batches"]["state"] == "failed"
    ((_, message),) = smtp_server.messages
    body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "elasticsearch_default" in body and "NEWSMON_ES_URL" in body


@pytest.mark.timeout(900)  # a dag.test() run that waits out a 15 s task timeout, on a busy machine
def test_a_poll_batch_past_its_timeout_is_cut_and_the_other_batch_still_gives_articles_alerts_and_ops_mail(
    tmp_path: Path, env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer, smtp_server: SmtpServer
) -> None:
    """Two mapped poll batches; the second holds a feed that answers after four minutes, so its task
    outlives its (shortened) execution timeout. The first batch's article is still built, indexed
    and alerted, and ops are mailed which task failed and why."""
    es, indices = store
    link = feed_server.add("/news/1.html", article_html("中方对日实施两用物项出口管制", EXPORT_CONTROL_PARAGRAPHS))
    feed_server.add("/feed-0.xml", rss("t", [{"title": "0", "link": link}]))
    feeds = [("f00", feed_server.url("/feed-0.xml"), "zh-Hans")]
    for i in range(1, FEEDS_PER_BATCH):
        feeds.append((f"f{i:02d}", feed_server.add(f"/feed-{i}.xml", rss("t", [])), "zh-Hans"))
    feeds.append(("stuck", feed_server.add("/stuck.xml", rss("t", []), delay=240), "zh-Hans"))
    write_feeds(env, feeds)
    write_rules(env)
    extra = {
        "NEWSMON_SMTP_HOST": "127.0.0.1",
        "NEWSMON_SMTP_PORT": str(smtp_server.port),
        "NEWSMON_OPS_EMAIL": "ops@example.org",
        # The fetch would give up on its own after 30 s; here only the task's timeout can stop it.
        "NEWSMON_FETCH_TOTAL_TIMEOUT": "300",
        "NEWSMON_FETCH_READ_TIMEOUT": "300",
        # The other batch polls its 25 loopback feeds in about 3 s at load 20: five times within this.
        "TASK_TIMEOUTS": "poll=15",
        "RUNS": "1",
    }
    ((run,),) = [airflow(tmp_path / "airflow", "newsmon_monitor", extra)["runs"]]
    tasks = run["tasks"]
    assert tasks["poll[0]"]["state"] == "success" and tasks["poll[1]"]["state"] == "failed", tasks
    assert tasks["build_articles"]["state"] == tasks["send_alerts"]["state"] == "success", tasks
    assert run["summary"]["batches_failed"] == 1
    assert run["summary"]["articles"]["indexed"] == 1 and run["summary"]["alerts"]["emails"] == 1
    assert len(feed_server.hits("/stuck.xml")) == 1
    es.indices.refresh(index=indices.articles)
    assert es.count(index=indices.articles, query={"term": {"source.kind": "feed"}})["count"] == 1
    by_recipient = {tuple(rcpts): message for rcpts, message in smtp_server.messages}
    ops = by_recipient.pop(("ops@example.org",))
    assert ops["Subject"].startswith("[newsmon] newsmon_monitor.poll[1] failed: AirflowTaskTimeout"), ops["Subject"]
    assert "AirflowTaskTimeout" in ops.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert len(by_recipient) == 1, "and the alert went out"
