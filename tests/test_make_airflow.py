"""`make airflow` (`newsmon airflow start`) driven as ops would: started, caught with a task in flight, stopped.

Afterwards no process it started may survive: not a component, not a LocalExecutor
worker, not a task process in its own process group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from pipeline.config import PROJECT_ROOT, Settings
from pipeline.esnode import EmbeddedNode, free_port
from pipeline.setup import TEMPLATES
from pipeline.standalone import task_parallelism
from tests.pages import rss, write_feeds
from tests.servers import FeedServer


def command_line(process: psutil.Process) -> str:
    """A child's command line; empty for one that exited (or is a zombie) while we looked."""
    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return ""


def listening_on(process: psutil.Process) -> set[tuple[str, int]]:
    """(ip, port) a child listens on; none for one that exited while we looked."""
    try:
        connections = process.net_connections(kind="inet")
        return {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return set()


START_TIMEOUT_S = 420  # node, database migration, four components and a first task, on a busy machine


def loopback(address: str) -> bool:
    return address in {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


NEWSMON = [sys.executable, "-m", "pipeline"]


def supervisor_env(tmp_path: Path, node: EmbeddedNode) -> dict[str, str]:
    """`make airflow` with no NEWSMON_ES_URL: the embedded node `node` names (var dir and instance) is its own."""
    config_dir = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config", config_dir)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("NEWSMON_", "AIRFLOW"))},
        "NEWSMON_CONFIG_DIR": str(config_dir),
        "NEWSMON_VAR_DIR": str(node.settings.var_dir),
        "NEWSMON_ES_INSTANCE": node.dir.name,
        "NEWSMON_ALERT_OUTBOX": str(tmp_path / "outbox"),
        "NEWSMON_INDEX_PREFIX": f"a{uuid.uuid4().hex[:10]}",
        "NEWSMON_FETCH_ALLOW_PRIVATE_HOSTS": "true",
    }


def start_airflow(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path, int]:
    """`newsmon airflow start` under tmp_path/airflow, logging to tmp_path/airflow.log: (process, home, port)."""
    home, port = tmp_path / "airflow", free_port()
    with (tmp_path / "airflow.log").open("w") as log:
        supervisor = subprocess.Popen(
            [*NEWSMON, "airflow", "start", "--home", str(home), "--port", str(port)],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return supervisor, home, port


def stop_airflow(home: Path, env: dict[str, str]) -> None:
    stopped = subprocess.run(
        [*NEWSMON, "airflow", "stop", "--home", str(home)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr


def running(processes: list[psutil.Process]) -> list[str]:
    """Command lines of those still running (a zombie has ended)."""
    alive = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(command_line(process))
    return alive


def executor_workers(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The LocalExecutor's workers; a task process forked by one keeps its title until it sets its own."""
    titles = {p.pid: command_line(p) for p in processes}
    parents = {}
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            parents[process.pid] = process.ppid()
    return [
        p
        for p in processes
        if "LocalExecutor" in titles[p.pid] and "LocalExecutor" not in titles.get(parents.get(p.pid, 0), "")
    ]


def end(supervisor: subprocess.Popen[bytes]) -> None:
    """After a failed assertion: stop it as Ctrl-C would."""
    if supervisor.poll() is None:
        supervisor.terminate()
        supervisor.wait(timeout=120)


# One start covers both ends of the stop: the task in flight and the node this supervisor started.
@pytest.mark.timeout(START_TIMEOUT_S + 180)
def test_airflow_stop_ends_every_process_and_the_node_it_started_with_a_task_in_flight(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    # A feed that answers only after a minute keeps a poll task running when the stop comes.
    feed_server.add("/slow.xml", rss("slow", []), content_type="application/rss+xml", delay=60.0)
    node = EmbeddedNode(Settings(var_dir=tmp_path / "var"), instance=f"airflow-{uuid.uuid4().hex[:8]}")
    env = supervisor_env(tmp_path, node)
    env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"  # the monitor runs as soon as it is parsed
    write_feeds(Path(env["NEWSMON_CONFIG_DIR"]), [("slow", feed_server.url("/slow.xml"), "zh")])
    supervisor, home, port = start_airflow(tmp_path, env)

    def log_tail() -> str:
        return (tmp_path / "airflow.log").read_text(errors="replace")[-4000:]

    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not feed_server.hits("/slow.xml"):
            assert supervisor.poll() is None, log_tail()
            assert time.monotonic() < deadline, "no poll task reached the feed\n" + log_tail()
            time.sleep(1)
        info = node.info()
        assert info is not None, "no NEWSMON_ES_URL and no node running: the supervisor starts one"
        started = psutil.Process(supervisor.pid).children(recursive=True)
        assert info.pid in {p.pid for p in started}
        titles = [t for t in map(command_line, started) if t]
        assert any("LocalExecutor" in t for t in titles), titles
        assert len(executor_workers(started)) <= task_parallelism(), titles
        listening = set().union(*map(listening_on, started))
        assert ("127.0.0.1", port) in listening
        assert all(loopback(ip) for ip, _ in listening), listening

        stop_airflow(home, env)
        assert supervisor.wait(timeout=30) == 0, log_tail()
        assert running(started) == []
        assert node.info() is None, "the node it started is stopped with it"
    finally:
        end(supervisor)
        node.stop()  # after a failure above: the test's node does not outlive it
        shutil.rmtree(node.dir, ignore_errors=True)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))  # nothing listens on the UI's port any more


@pytest.mark.timeout(START_TIMEOUT_S)
def test_airflow_stopped_while_it_starts_leaves_a_node_it_did_not_start_running(
    tmp_path: Path, es_embedded: EmbeddedNode
) -> None:
    """The embedded node runs already (the session's, found as `make airflow` finds a node of `make run`):
    it is used, and still runs after a stop, since this supervisor did not start it. The stop comes
    as soon as the supervisor has set up its indices on that node, as a Ctrl-C before the UI answers would."""
    env = supervisor_env(tmp_path, es_embedded)
    node_before = es_embedded.info()
    assert node_before is not None
    last_index = f"{node_before.url}/{env['NEWSMON_INDEX_PREFIX']}-{TEMPLATES[-1]}"
    supervisor, home, _ = start_airflow(tmp_path, env)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S - 120
        while httpx.head(last_index).status_code != 200:
            assert supervisor.poll() is None, (tmp_path / "airflow.log").read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, "the supervisor never set up its indices on the running node"
            time.sleep(0.5)
        started = psutil.Process(supervisor.pid).children(recursive=True)
        stop_airflow(home, env)
        assert supervisor.wait(timeout=30) == 0
    finally:
        end(supervisor)
    assert running(started) == []
    assert es_embedded.info() == node_before, "a node it did not start keeps running"
