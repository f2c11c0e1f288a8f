"""What every newsmon task needs: its settings and store, and the ops mail when it fails."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

log = logging.getLogger(__name__)


def notify_ops(context: Any) -> None:
    """on_failure_callback: mail ops which task failed, the error line and the log link.

    When the mail server does not take it, the mail is held in the store for the next alert stage.
    """
    from pipeline.connections import ops_settings
    from pipeline.es import open_store
    from pipeline.ops import TaskFailure, error_line, notify_failure

    ti = context["ti"]
    failure = TaskFailure(
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=ti.run_id,
        try_number=ti.try_number,
        map_index=ti.map_index if ti.map_index is not None else -1,
        error=error_line(context.get("exception")),
        log_url=ti.log_url,
    )
    settings, smtp = ops_settings(BaseHook.get_connection, AirflowNotFoundException)
    held_in = None
    if settings.es_url:  # no configured store: none is opened (a worker never starts an embedded node)
        try:
            held_in = open_store(settings)
        except Exception as exc:  # the store may be what failed: the mail can still go out, only not be held
            log.warning("no store to hold the ops mail in, should the mail server not take it: %s", exc)
    notify_failure(failure, settings, smtp, held_in)


def spare_workers_the_airflow_script() -> None:
    """Let the extraction pool's workers start in a task process.

    A task's __main__ is the `airflow` script, and forkserver workers re-run __main__
    from its path: there Airflow's import fails, as a task's environment hides the
    metadata database, and the pool breaks. Named `airflow.__main__`, the script is one
    multiprocessing never re-runs.
    """
    main = sys.modules["__main__"]
    if getattr(main, "__spec__", None) is None:
        main.__spec__ = importlib.util.find_spec("airflow.__main__")


@contextmanager
def store() -> Iterator[tuple[Any, Any, Any, Any]]:
    """Settings, SMTP and the store for one task; a configuration error fails it without retries."""
    from pipeline.config import ConfigError

    spare_workers_the_airflow_script()
    from pipeline.connections import settings_from_connections
    from pipeline.es import open_store

    try:
        settings, smtp = settings_from_connections(BaseHook.get_connection, AirflowNotFoundException)
        es, indices = open_store(settings)
        yield settings, smtp, es, indices
    except ConfigError as exc:
        raise AirflowFailException(str(exc)) from exc


@contextmanager
def setup_settings() -> Iterator[tuple[Any, Any]]:
    """The runtime settings and the privileged ones (None without that connection), for the index
    migration; a configuration error, or templates that only `newsmon setup` may change, fail it
    without retries: a retry cannot mend either."""
    from pipeline.config import ConfigError
    from pipeline.connections import settings_from_connections, setup_settings_from_connections
    from pipeline.setup import SetupError

    try:
        settings, _ = settings_from_connections(BaseHook.get_connection, AirflowNotFoundException)
        yield settings, setup_settings_from_connections(BaseHook.get_connection, AirflowNotFoundException)
    except (ConfigError, SetupError) as exc:
        raise AirflowFailException(str(exc)) from exc
