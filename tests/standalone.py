"""`newsmon airflow start` (pipeline/standalone.py, what `make airflow` runs) for a test or the bench.

The pipeline's own supervisor, as a child process: its own AIRFLOW_HOME and API port, the
caller's NEWSMON_* settings (with NEWSMON_ES_URL set, it starts no node of its own). Stopped
with SIGTERM, it ends every component and task process it started before it exits.
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
from pipeline.standalone import AIRFLOW, GRACE_SECONDS

STOP_TIMEOUT_S = GRACE_SECONDS + 60


@dataclass(frozen=True)
class Standalone:
    home: Path
    env: dict[str, str]
    log: Path
    pid: int

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """An `airflow` CLI command against this instance."""
        return subprocess.run(
            [str(AIRFLOW), *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
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
    """The supervisor under `home`, with `base_env` (this process's environment if not given) and its own port."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **(os.environ if base_env is None else base_env),
        "AIRFLOW_HOME": str(home),  # for `cli`; the supervisor sets its components' environment itself
        # A task's first calls to the API server outlast Airflow's 5 s on a loaded 2-core machine.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
    }
    log = home / "standalone.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "airflow", "start", "--home", str(home), "--port", str(free_port())],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Standalone(home, env, log, process.pid)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """As `newsmon airflow stop` does; SIGKILL only for a supervisor that hangs (its components follow it)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)
