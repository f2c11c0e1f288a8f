"""newsmon_maintenance: daily index migration, retry of backed-off feeds, feed health, retag on watchlist change.

Thin wiring only: every step is a `pipeline.maintenance` or `pipeline.setup` function. A
configuration error fails its task at once instead of being retried.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, task

from newsmon_airflow.tasks import notify_ops, setup_settings, store


@dag(
    dag_id="newsmon_maintenance",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["newsmon"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5), "on_failure_callback": notify_ops},
)
def newsmon_maintenance() -> None:
    @task
    def update_indices() -> dict[str, Any]:
        from pipeline.setup import scheduled_setup

        with setup_settings() as (settings, privileged):
            return scheduled_setup(settings, privileged)

    @task
    def retry_backed_off_feeds() -> dict[str, int]:
        from pipeline.maintenance import retry_backed_off_feeds

        with store() as (settings, _, es, indices):
            return retry_backed_off_feeds(settings, es, indices)

    @task
    def report_feed_health(retried: dict[str, int]) -> dict[str, int]:
        from pipeline.maintenance import report_feed_health

        with store() as (settings, _, es, indices):
            return {**retried, **report_feed_health(settings, es, indices)}

    @task
    def retag_if_watchlist_changed() -> dict[str, int]:
        from pipeline.maintenance import retag_if_watchlist_changed

        with store() as (settings, _, es, indices):
            return retag_if_watchlist_changed(settings, es, indices)

    indices_ready = update_indices()
    indices_ready >> retag_if_watchlist_changed()
    indices_ready >> report_feed_health(retry_backed_off_feeds())


newsmon_maintenance()
