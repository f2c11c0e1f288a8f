"""newsmon_maintenance: daily index migration, retry of backed-off feeds, feed health, retag on watchlist change."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import BaseHook, dag, task
from airflow.sdk.exceptions import AirflowNotFoundException


@dag(
    dag_id="newsmon_maintenance",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["newsmon"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
)
def newsmon_maintenance() -> None:
    @task
    def update_indices() -> dict[str, Any]:
        from pipeline.connections import settings_from_connections, setup_settings_from_connections
        from pipeline.setup import scheduled_setup

        settings, _ = settings_from_connections(BaseHook.get_connection, AirflowNotFoundException)
        privileged = setup_settings_from_connections(BaseHook.get_connection, AirflowNotFoundException)
        return scheduled_setup(settings, privileged)

    @task
    def retry_backed_off_feeds() -> dict[str, Any]:
        from datetime import UTC

        from pipeline.connections import settings_from_connections
        from pipeline.es import open_store
        from pipeline.feeds import load_states
        from pipeline.run import configured_feeds, poll_stage

        settings, _ = settings_from_connections(BaseHook.get_connection, AirflowNotFoundException)
        es, indices = open_store(settings)
        feeds = configured_feeds(settings)
        states = load_states(es, indices, feeds)
        failing = [f for f in feeds if states[f.name].consecutive_errors > 0]
        if not failing:
            return {"retried": 0}
        counts = poll_stage(settings, es, indices, failing, datetime.now(UTC), force=True)
        return {"retried": len(failing), "recovered": len(failing) - counts["failed"]}

    @task
    def report_feed_health(retried: dict[str, Any]) -> dict[str, Any]:
        import logging
        from datetime import UTC

        from pipeline.connections import settings_from_connections
        from pipeline.es import open_store
        from pipeline.feeds import feed_health
        from pipeline.run import configured_feeds

        settings, _ = settings_from_connections(BaseHook.get_connection, AirflowNotFoundException)
        es, indices = open_store(settings)
        health = feed_health(es, indices, configured_feeds(settings), datetime.now(UTC))
        log = logging.getLogger("newsmon.health")
        for line in health["failing"]:
            log.warning("failing feed %s", line)
        for name in health["stale"]:
            log.warning("no new entries for 7 days: %s", name)
        return {**retried, "failing": len(health["failing"]), "stale": len(health["stale"])}

    @task
    def retag_if_watchlist_changed() -> dict[str, int]:
        from pipeline.connections import settings_from_connections
        from pipeline.es import open_store
        from pipeline.index import retag, stale_tag_count
        from pipeline.tag import get_tagger
        from pipeline.watchlist import load_watchlist

        settings, _ = settings_from_connections(BaseHook.get_connection, AirflowNotFoundException)
        es, indices = open_store(settings)
        version = load_watchlist(settings.config_file("watchlist.yaml")).version
        if not stale_tag_count(es, indices, version):
            return {"retagged": 0}
        return retag(es, indices, get_tagger(settings), workers=settings.workers)

    indices_ready = update_indices()
    indices_ready >> retag_if_watchlist_changed()
    indices_ready >> report_feed_health(retry_backed_off_feeds())


newsmon_maintenance()
