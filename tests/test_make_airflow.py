"""`make airflow` (`newsmon airflow start`) driven as ops would: started, caught with a task in flight, stopped.

Afterwards no process it started may survive: not a component, not a LocalExecutor
worker, not a task process in its own process group.
"""

from __future__ import annotations

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


@pytest.mark.timeout(START_TIMEOUT_S + 180)
def test_airflow_stop_ends_every_process_it_started_with_a_task_in_flight(
    tmp_path: Path, feed_server: FeedServer, es_embedded: EmbeddedNode
) -> None:
    """The embedded node runs already (the session's, found as `make airflow` finds a node of `make run`):
    it is used, and still runs after the stop, since this supervisor did not start it."""
    # A feed that answers only after a minute keeps a poll task running when the stop comes.
    feed_server.add("/slow.xml", rss("slow", []), content_type="application/rss+xml", delay=60.0)
    env = supervisor_env(tmp_path, es_embedded)
    env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"  # the monitor runs as soon as it is parsed
    write_feeds(Path(env["NEWSMON_CONFIG_DIR"]), [("slow", feed_server.url("/slow.xml"), "zh")])
    node_before = es_embedded.info()
    assert node_before is not None
    supervisor, home, port = start_airflow(tmp_path, env)

    def log_tail() -> str:
        return (tmp_path / "airflow.log").read_text(errors="replace")[-4000:]

    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not feed_server.hits("/slow.xml"):
            assert supervisor.poll() is None, log_tail()
            assert time.monotonic() < deadline, "no poll task reached the feed\n" + log_tail()
            time.sleep(1)
        started = psutil.Process(supervisor.pid).children(recursive=True)
        titles = [t for t in map(command_line, started) if t]
        assert any("LocalExecutor" in t for t in titles), titles
        assert sum("LocalExecutor" in t for t in titles) <= task_parallelism()
        listening = set().union(*map(listening_on, started))
        assert ("127.0.0.1", port) in listening
        assert all(loopback(ip) for ip, _ in listening), listening

        stop_airflow(home, env)
        assert supervisor.wait(timeout=30) == 0, log_tail()
    finally:
        if supervisor.poll() is None:  # a failed assertion: stop it as Ctrl-C would
            supervisor.terminate()
            supervisor.wait(timeout=120)
    survivors = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert survivors == [], [" ".join(p.cmdline()) for p in survivors]
    assert es_embedded.info() == node_before, "a node it did not start keeps running"
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))  # nothing listens on the UI's port any more


@pytest.mark.timeout(START_TIMEOUT_S + 180)
def test_airflow_stop_stops_the_embedded_node_it_started(tmp_path: Path) -> None:
    node = EmbeddedNode(Settings(var_dir=tmp_path / "var"), instance=f"airflow-{uuid.uuid4().hex[:8]}")
    env = supervisor_env(tmp_path, node)
    supervisor, home, port = start_airflow(tmp_path, env)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(f"http://127.0.0.1:{port}/api/v2/monitor/health"):
            assert supervisor.poll() is None, (tmp_path / "airflow.log").read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, "the API server never answered"
            time.sleep(1)
        info = node.info()
        assert info is not None, "no NEWSMON_ES_URL and no node running: the supervisor starts one"
        stop_airflow(home, env)
        assert supervisor.wait(timeout=30) == 0
        gone = not psutil.pid_exists(info.pid) or psutil.Process(info.pid).status() == psutil.STATUS_ZOMBIE
        assert gone and node.info() is None, "the node it started is stopped with it"
    finally:
        if supervisor.poll() is None:
            supervisor.terminate()
            supervisor.wait(timeout=120)
        node.stop()  # after a failure above: the test's node does not outlive it
        shutil.rmtree(node.dir, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code < 500
    except httpx.HTTPError:
        return False
