"""`make airflow`: Airflow's components and the embedded node on this machine, on loopback, ended together.

`airflow standalone` is not used: stopped, it leaves the scheduler, the API server
and the task processes running (task processes put themselves in process groups of
their own), and its log servers listen on every interface. Here one supervisor runs
the scheduler, the DAG processor, the triggerer and the API server itself:

- it is the child subreaper of everything it starts (Linux `PR_SET_CHILD_SUBREAPER`),
  so a task process whose parent died is still its descendant and is ended too;
- Ctrl-C, SIGTERM or `newsmon airflow stop` end every descendant (SIGTERM, then
  SIGKILL after a grace period), then the embedded node if this supervisor started it;
- the API server binds 127.0.0.1; the scheduler and triggerer serve no logs over
  HTTP (with the local executor the API server reads the task log files directly);
- the API server starts first, the others once it answers (tasks report to it);
- task parallelism is the machine's CPU count (at least 2), one API worker, one
  DAG-parsing process.

Nothing here imports Airflow: the components are `airflow …` commands.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil  # Airflow depends on it, so it is there wherever `make airflow` runs

from pipeline.config import PROJECT_ROOT, ConfigError, Settings
from pipeline.esnode import EmbeddedNode

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
API_START_TIMEOUT_S = 300.0
# The `airflow` of this interpreter's environment, whether or not it is on PATH.
AIRFLOW = Path(sys.executable).with_name("airflow")
GRACE_SECONDS = 20.0  # how long components get to finish after SIGTERM before SIGKILL


@dataclass(frozen=True)
class Layout:
    """Where this Airflow keeps its state and where it listens."""

    home: Path  # AIRFLOW_HOME: airflow.cfg, the SQLite database, task logs
    port: int  # the API server and UI, on 127.0.0.1

    @property
    def pid_file(self) -> Path:
        return self.home / "supervisor.pid"


def task_parallelism() -> int:
    """Task processes at once: one per CPU, at least 2 (a poll batch and the next stage)."""
    return max(2, os.cpu_count() or 2)


def components(layout: Layout) -> dict[str, list[str]]:
    """Each component's `airflow` arguments, in the order they start (the API server first)."""
    return {
        "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(layout.port), "--workers", "1"],
        "scheduler": ["scheduler", "--skip-serve-logs"],
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer", "--skip-serve-logs"],
    }


def airflow_env(layout: Layout, settings: Settings, es_url: str) -> dict[str, str]:
    """The components' environment: this project's DAGs, loopback only, counts that fit the machine."""
    parallelism = str(task_parallelism())
    api = f"http://127.0.0.1:{layout.port}"
    return {
        **os.environ,
        "PATH": f"{AIRFLOW.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(layout.home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__PARALLELISM": parallelism,
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": parallelism,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(layout.port),
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        # Tasks never start a node of their own: they get the URL of the one started here.
        "NEWSMON_ES_URL": es_url,
        "NEWSMON_ALERT_OUTBOX": os.environ.get("NEWSMON_ALERT_OUTBOX") or str(settings.var_dir / "outbox"),
    }


class Supervisor:
    """Runs the components until one exits or a stop is asked for, then ends every descendant."""

    def __init__(self, settings: Settings, layout: Layout) -> None:
        self.settings = settings
        self.layout = layout
        self.node = EmbeddedNode(settings)
        self.node_started = False
        self.stop_asked = threading.Event()

    def run(self) -> int:
        """Returns 0 after a stop that was asked for, 1 when a component ended on its own."""
        _become_subreaper()
        self.layout.home.mkdir(parents=True, exist_ok=True)
        self._claim_pid_file()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: self.stop_asked.set())
        try:
            # Written once before the components start, so they all read one airflow.cfg (one JWT secret);
            # it needs no cluster, so it runs while the node starts (each takes tens of seconds on 2 cores).
            migrate = [str(AIRFLOW), "db", "migrate"]
            no_cluster = airflow_env(self.layout, self.settings, "")
            migrating = subprocess.Popen(migrate, env=no_cluster, stdout=subprocess.DEVNULL)
            env = airflow_env(self.layout, self.settings, self._elasticsearch())
            if migrating.wait() != 0:
                raise subprocess.CalledProcessError(migrating.returncode, migrate)
            procs: dict[str, subprocess.Popen[bytes]] = {}
            for name, argv in components(self.layout).items():
                procs[name] = subprocess.Popen(  # the supervisor runs no threads: preexec_fn is safe here
                    [str(AIRFLOW), *argv],
                    env=env,
                    start_new_session=True,
                    preexec_fn=_end_with_parent,  # noqa: PLW1509
                )
                # Tasks report to the API server: a scheduler started before it answers fails its first tasks.
                if name == "api-server" and not self._api_answers(procs[name]):
                    return 0 if self.stop_asked.is_set() else 1  # a stop during the start is still a stop
            log.info("airflow components started (%d task processes at most)", task_parallelism())
            ended = self._wait(procs)
            if ended:
                log.error("airflow %s exited with %s: stopping the others", ended, procs[ended].returncode)
            return 1 if ended else 0
        finally:
            end_descendants(GRACE_SECONDS, keep=self._node_pids())
            if self.node_started:
                self.node.stop()
            self.layout.pid_file.unlink(missing_ok=True)

    def _elasticsearch(self) -> str:
        """The cluster's URL (the embedded node, started when not running), set up as `make run` would."""
        from pipeline.es import connect
        from pipeline.setup import setup_indices

        url = self.settings.es_url
        if not url:
            self.node_started = self.node.info() is None
            url = self.node.start().url
        # The runtime refuses a cluster nobody set up; repeating it changes nothing.
        setup_indices(connect(self.settings.model_copy(update={"es_url": url})), self.settings)
        return url

    def _api_answers(self, proc: subprocess.Popen[bytes]) -> bool:
        """Wait until the API server answers; False when it exited or a stop came first."""
        url = f"http://127.0.0.1:{self.layout.port}/api/v2/monitor/health"
        deadline = time.monotonic() + API_START_TIMEOUT_S
        while proc.poll() is None and not self.stop_asked.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2.0).status_code < 500:
                    return True
            self.stop_asked.wait(1.0)
        if not self.stop_asked.is_set():
            log.error("the airflow API server did not answer on %s (exit status %s)", url, proc.poll())
        return False

    def _claim_pid_file(self) -> None:
        other = running_supervisor(self.layout)
        if other is not None:
            raise ConfigError(
                f"airflow already runs from {self.layout.home} (pid {other}): `newsmon airflow stop` first"
            )
        self.layout.pid_file.write_text(str(os.getpid()))

    def _wait(self, procs: dict[str, subprocess.Popen[bytes]]) -> str | None:
        """Until a stop is asked for (None) or a component exits (its name)."""
        while not self.stop_asked.wait(1.0):
            for name, proc in procs.items():
                if proc.poll() is not None:
                    return name
            _reap_adopted({p.pid for p in procs.values()})
        return None

    def _node_pids(self) -> set[int]:
        """The embedded node this supervisor started is stopped by its own owner, after the components."""
        info = self.node.info() if self.node_started else None
        if info is None:
            return set()
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(info.pid)
            return {info.pid, *(p.pid for p in root.children(recursive=True))}
        return set()


def end_descendants(grace: float, keep: AbstractSet[int] = frozenset()) -> None:
    """SIGTERM every descendant but `keep`, SIGKILL what is left after `grace`; repeat for late orphans."""
    me = psutil.Process()
    for _ in range(3):  # orphans reparented to this subreaper while the first round ran
        victims = [p for p in me.children(recursive=True) if p.pid not in keep]
        if not victims:
            return
        for proc in victims:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.terminate()
        _, alive = psutil.wait_procs(victims, timeout=grace)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
        grace = 5.0


def _reap_adopted(own: set[int]) -> None:
    """Collect the exit status of orphans adopted as subreaper (not the components: Popen does that)."""
    for child in psutil.Process().children():
        if child.pid in own:
            continue
        with contextlib.suppress(psutil.NoSuchProcess, ChildProcessError):
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)


def _end_with_parent() -> None:
    """In a component, before exec: SIGTERM when the supervisor dies, even by SIGKILL."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning(
            "prctl(PR_SET_CHILD_SUBREAPER) failed (errno %d): orphaned tasks may outlive a stop", ctypes.get_errno()
        )


def running_supervisor(layout: Layout) -> int | None:
    """The pid of the supervisor running from this home, or None."""
    try:
        pid = int(layout.pid_file.read_text().strip())
        alive = pid != os.getpid() and _running(psutil.Process(pid))
    except (FileNotFoundError, ValueError, psutil.NoSuchProcess):
        return None
    return pid if alive else None


def stop(layout: Layout, timeout: float = GRACE_SECONDS + 60) -> bool:
    """Ask the supervisor of this home to stop and wait until it has; False when none was running."""
    pid = running_supervisor(layout)
    if pid is None:
        return False
    proc = psutil.Process(pid)
    proc.terminate()
    deadline = time.monotonic() + timeout
    while _running(proc):  # not proc.wait(): a supervisor that ended stays a zombie until its parent reaps it
        if time.monotonic() > deadline:
            raise ConfigError(f"airflow supervisor {pid} did not stop within {timeout:.0f}s")
        time.sleep(0.5)
    return True


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
