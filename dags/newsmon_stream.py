"""newsmon_stream: a run as soon as the feed trigger has queued new entries.

The asset's watcher (newsmon_airflow.triggers.NewFeedEntriesTrigger) polls the due
feeds in the triggerer, so a run starts only when there is work. One task builds
the queued articles and sends their alerts: each task costs seconds to start, and
these two always run back to back. It is not retried: a retry would hold the only
run slot, and newsmon_monitor, still on its timed schedule, picks up whatever a
failed run left queued or pending.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Asset, AssetWatcher, dag, task

from newsmon_airflow.tasks import notify_ops, store
from newsmon_airflow.triggers import NewFeedEntriesTrigger

NEW_FEED_ENTRIES = Asset(
    "newsmon_new_feed_entries",
    watchers=[AssetWatcher(name="newsmon_feed_poller", trigger=NewFeedEntriesTrigger())],
)


@dag(
    dag_id="newsmon_stream",
    schedule=[NEW_FEED_ENTRIES],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["newsmon"],
    default_args={"retries": 0, "on_failure_callback": notify_ops},
)
def newsmon_stream() -> None:
    @task(execution_timeout=timedelta(minutes=15))
    def build_and_alert() -> dict[str, Any]:
        from pipeline.lifecycle import process_entries
        from pipeline.run import alert_stage

        with store() as (settings, smtp, es, indices):
            built = process_entries(settings, es, indices)
            alerted = alert_stage(settings, es, indices, smtp)
        if alerted["errors"]:
            raise RuntimeError("; ".join(alerted["errors"]) + " (pending: the next run sends them)")
        return {"articles": built, "alerts": {k: alerted[k] for k in ("emails", "alerted", "held")}}

    build_and_alert()


newsmon_stream()
