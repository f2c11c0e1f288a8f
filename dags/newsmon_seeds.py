"""newsmon_seeds: load (and retag) the seed articles; run it by hand."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import BaseHook, dag, task
from airflow.sdk.exceptions import AirflowNotFoundException


@dag(dag_id="newsmon_seeds", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["newsmon"])
def newsmon_seeds() -> None:
    @task
    def load_seeds() -> dict[str, int]:
        from pipeline.connections import settings_from_connections
        from pipeline.es import open_store
        from pipeline.index import retag
        from pipeline.seeds import load_seeds as load
        from pipeline.tag import get_tagger

        settings, _ = settings_from_connections(BaseHook.get_connection, AirflowNotFoundException)
        es, indices = open_store(settings)
        tagger = get_tagger(settings)
        seeds = load(es, indices, tagger)
        return {"seeds": seeds, **retag(es, indices, tagger, wall_timeout=settings.retag_wall_timeout)}

    load_seeds()


newsmon_seeds()
