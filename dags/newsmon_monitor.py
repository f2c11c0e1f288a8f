"""newsmon_monitor: poll feeds in batches, build articles, send alerts.

Thin wiring only: every step is a `pipeline` function. XCom carries counts and
feed names, never article text. One fault stays in its place: a failed poll
batch does not stop the articles of the others, a failed delivery is not
retried by Airflow (its pairs stay pending and the next run sends them), and a
configuration error fails at once instead of being retried. Every failure
mails NEWSMON_OPS_EMAIL.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import TriggerRule, dag, task

from newsmon_airflow.tasks import notify_ops, store
from pipeline.config import load_settings

FEEDS_PER_BATCH = 25


@dag(
    dag_id="newsmon_monitor",
    schedule=timedelta(minutes=load_settings().monitor_every_minutes),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["newsmon"],
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=15),
        "execution_timeout": timedelta(minutes=15),
        "on_failure_callback": notify_ops,
    },
)
def newsmon_monitor() -> None:
    @task(execution_timeout=timedelta(minutes=2))
    def plan_batches() -> list[list[str]]:
        from pipeline.run import configured_feeds

        with store() as (settings, _, _, _):
            names = [f.name for f in configured_feeds(settings)]
        return [names[i : i + FEEDS_PER_BATCH] for i in range(0, len(names), FEEDS_PER_BATCH)]

    @task
    def poll(batch: list[str]) -> dict[str, Any]:
        from pipeline.run import configured_feeds, poll_stage

        with store() as (settings, _, es, indices):
            return poll_stage(settings, es, indices, configured_feeds(settings, batch))

    # Runs once every batch is done, whatever failed: a failing batch must not hold back the others'
    # articles, nor the entries queued by earlier runs.
    @task(trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS, execution_timeout=timedelta(minutes=45))
    def build_articles(polled: list[dict[str, Any] | None], batches: list[list[str]]) -> dict[str, Any]:
        from pipeline.lifecycle import process_entries

        # A failed batch leaves no result at all in `polled`: count failures against the plan.
        done = [p for p in polled if p]
        with store() as (settings, _, es, indices):
            built = process_entries(settings, es, indices)
        totals = {k: sum(p[k] for p in done) for k in ("polled", "not_modified", "failed", "new")}
        return {"poll": totals, "batches_failed": len(batches) - len(done), "articles": built}

    # Not retried: a retry would hold the run slot through a mail outage; the next run sends what is pending.
    @task(retries=0, execution_timeout=timedelta(minutes=10))
    def send_alerts(summary: dict[str, Any]) -> dict[str, Any]:
        from pipeline.run import alert_stage

        with store() as (settings, smtp, es, indices):
            alerted = alert_stage(settings, es, indices, smtp)
        if alerted["errors"]:
            raise RuntimeError("; ".join(alerted["errors"]) + " (pending: the next run sends them)")
        return {**summary, "alerts": {k: alerted[k] for k in ("emails", "alerted", "held")}}

    batches = plan_batches()
    send_alerts(build_articles(poll.expand(batch=batches), batches))


newsmon_monitor()
