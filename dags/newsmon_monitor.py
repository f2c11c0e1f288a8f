"""newsmon_monitor: poll feeds in batches, build articles, send alerts.

Thin wiring only: every step is a `pipeline` function. XCom carries counts and
feed names, never article text.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.sdk import BaseHook, dag, task

FEEDS_PER_BATCH = 25

ops_notifier = SmtpNotifier(
    to=os.environ.get("NEWSMON_OPS_EMAIL", "ops@localhost"),
    subject="[newsmon] {{ dag.dag_id }} {{ ti.task_id if ti else '' }} failed",
    html_content="Run {{ run_id }} failed; see the task log.",
    smtp_conn_id="smtp_default",
)


@dag(
    dag_id="newsmon_monitor",
    schedule=timedelta(minutes=int(os.environ.get("NEWSMON_MONITOR_EVERY_MINUTES", "5"))),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["newsmon"],
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=15),
        "on_failure_callback": ops_notifier,
    },
)
def newsmon_monitor() -> None:
    @task
    def plan_batches() -> list[list[str]]:
        from pipeline.connections import settings_from_connections
        from pipeline.run import configured_feeds

        settings, _ = settings_from_connections(BaseHook.get_connection)
        names = [f.name for f in configured_feeds(settings)]
        return [names[i : i + FEEDS_PER_BATCH] for i in range(0, len(names), FEEDS_PER_BATCH)]

    @task
    def poll(batch: list[str]) -> dict[str, Any]:
        from pipeline.connections import settings_from_connections
        from pipeline.es import open_store
        from pipeline.run import configured_feeds, poll_stage

        settings, _ = settings_from_connections(BaseHook.get_connection)
        es, indices = open_store(settings)
        return poll_stage(settings, es, indices, configured_feeds(settings, batch))

    @task
    def build_articles(polled: list[dict[str, Any]]) -> dict[str, Any]:
        from pipeline.connections import settings_from_connections
        from pipeline.es import open_store
        from pipeline.run import process_stage

        settings, _ = settings_from_connections(BaseHook.get_connection)
        es, indices = open_store(settings)
        built = process_stage(settings, es, indices)
        totals = {k: sum(p[k] for p in polled) for k in ("polled", "not_modified", "failed", "new")}
        return {"poll": totals, "articles": built}

    @task
    def send_alerts(summary: dict[str, Any]) -> dict[str, Any]:
        from pipeline.connections import settings_from_connections
        from pipeline.es import open_store
        from pipeline.run import alert_stage

        settings, smtp = settings_from_connections(BaseHook.get_connection)
        es, indices = open_store(settings)
        alerted = alert_stage(settings, es, indices, smtp)
        if alerted["errors"]:
            # Nothing unsent was recorded, so Airflow's retry sends exactly what is missing.
            raise RuntimeError("; ".join(alerted["errors"]))
        return {**summary, "alerts": {k: alerted[k] for k in ("emails", "alerted")}}

    send_alerts(build_articles(poll.expand(batch=plan_batches())))


newsmon_monitor()
