"""Runs Airflow in a clean process: `python -m tests.airflow_driver HOME MODE`.

Airflow reads its configuration when first imported, so the test sets
AIRFLOW_HOME and friends in this process's environment before the import.
Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from datetime import timedelta
from pathlib import Path

from pipeline.config import PROJECT_ROOT


def airflow_env(home: Path) -> dict[str, str]:
    """Variables for an Airflow of its own under `home`: a copy of dags/, SQLite, no examples."""
    dags = home / "dags"
    shutil.copytree(PROJECT_ROOT / "dags", dags, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }


def prepare(home: Path) -> Path:
    os.environ.update(airflow_env(home))
    return Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])


def main(home: Path, mode: str) -> dict:
    dags = prepare(home)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dags))
    if mode == "dagbag":
        return {
            "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
            "dags": {
                dag_id: {
                    "tasks": sorted(t.task_id for t in dag.tasks),
                    "schedule": str(dag.schedule),
                    "max_active_runs": dag.max_active_runs,
                    "catchup": dag.catchup,
                    "watchers": [
                        {"asset": asset.name, "watcher": w.name, "trigger": w.trigger.serialize()[0]}
                        for asset in (dag.schedule if isinstance(dag.schedule, list) else [])
                        for w in asset.watchers
                    ],
                    "retries": sorted({t.retries for t in dag.tasks}),
                    "task_details": {
                        t.task_id: {
                            "retries": t.retries,
                            "trigger_rule": getattr(t.trigger_rule, "value", t.trigger_rule),
                            "execution_timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                        }
                        for t in dag.tasks
                    },
                }
                for dag_id, dag in bag.dags.items()
            },
        }
    from airflow.utils import db

    db.upgradedb()
    dag = bag.dags[mode]
    if not os.environ.get("KEEP_RETRIES"):
        for task in dag.tasks:
            task.retries = 0  # fail fast in tests instead of waiting for retry delays
    # TASK_TIMEOUTS="poll=20": shorter execution timeouts, so a test sees one fire within seconds.
    for item in filter(None, os.environ.get("TASK_TIMEOUTS", "").split(",")):
        task_id, seconds = item.split("=")
        dag.get_task(task_id).execution_timeout = timedelta(seconds=float(seconds))
    runs = []
    last_task = dag.leaves[0].task_id
    for _ in range(int(os.environ.get("RUNS", "2"))):
        run = dag.test()
        last = run.get_task_instance(last_task)
        summary = last.xcom_pull(task_ids=last_task) if last and str(last.state) == "success" else None
        tasks = {
            f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id: {
                "state": str(ti.state),
                "try_number": ti.try_number,
            }
            for ti in run.get_task_instances()
        }
        runs.append({"state": str(run.state), "summary": summary, "tasks": tasks})
    return {"runs": runs}


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(Path(sys.argv[1]), sys.argv[2]), ensure_ascii=False, default=str))
