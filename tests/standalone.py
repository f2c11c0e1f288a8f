"""A real `airflow standalone` on loopback for a test or the bench, stopped with every child it started.

Its own AIRFLOW_HOME (SQLite, a copy of dags/), the API server and both log servers
on free ports, the API on 127.0.0.1, and this venv's `airflow` first on the PATH
(standalone starts its components by name). NEWSMON_* settings pass through from
the caller's environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import PROJECT_ROOT
from pipeline.esnode import free_port
from tests.airflow_driver import airflow_env

BIN = Path(sys.executable).parent
STOP_GRACE_S = 30.0


@dataclass(frozen=True)
class Standalone:
    home: Path
    env: dict[str, str]
    log: Path
    pid: int

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """An `airflow` CLI command against this instance."""
        return subprocess.run(
            [str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def unpause(self, dag_id: str, timeout: float = 300.0) -> None:
        """Unpause a DAG as soon as the DAG processor has stored it."""
        deadline = time.monotonic() + timeout
        while True:
            done = self.cli("dags", "unpause", dag_id)
            # Before the DAG processor has stored it, unpause finds nothing to change and still exits 0.
            if done.returncode == 0 and dag_id in done.stdout:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} could not be unpaused: {done.stderr[-1500:]}\n{self.tail()}")
            time.sleep(2)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-chars:]


@contextmanager
def airflow_standalone(home: Path, base_env: Mapping[str, str] | None = None) -> Iterator[Standalone]:
    """Standalone under `home`, with `base_env` (this process's environment if not given) and its own ports."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = os.environ if base_env is None else base_env
    env = {
        **base,
        **airflow_env(home),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "PATH": f"{BIN}{os.pathsep}{base.get('PATH', '')}",
        # A task's first calls to the API server outlast Airflow's 5 s on a loaded 2-core machine.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
    }
    log = home / "standalone.log"
    with log.open("wb") as out:
        # A session of its own: stopping the group stops the scheduler, triggerer, API server and tasks.
        process = subprocess.Popen(
            [str(BIN / "airflow"), "standalone"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Standalone(home, env, log, process.pid)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and _group_alive(process.pid):
        process.poll()
        time.sleep(0.5)
    if _group_alive(process.pid):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=STOP_GRACE_S)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
