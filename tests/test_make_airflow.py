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

import psutil
import pytest

from pipeline.config import PROJECT_ROOT
from pipeline.esnode import free_port
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


@pytest.mark.timeout(START_TIMEOUT_S + 180)
def test_airflow_stop_ends_every_process_it_started_with_a_task_in_flight(
    tmp_path: Path, feed_server: FeedServer, es_node: str
) -> None:
    # A feed that answers only after a minute keeps a poll task running when the stop comes.
    feed_server.add("/slow.xml", rss("slow", []), content_type="application/rss+xml", delay=60.0)
    config_dir = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config", config_dir)
    write_feeds(config_dir, [("slow", feed_server.url("/slow.xml"), "zh")])
    home, port = tmp_path / "airflow", free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("NEWSMON_", "AIRFLOW"))},
        "NEWSMON_CONFIG_DIR": str(config_dir),
        "NEWSMON_VAR_DIR": str(tmp_path / "var"),
        # The session's node, set up for this prefix by the supervisor: starting one more node costs minutes
        # on a busy machine, and `newsmon es start/stop` have tests of their own.
        "NEWSMON_ES_URL": es_node,
        "NEWSMON_INDEX_PREFIX": f"a{uuid.uuid4().hex[:10]}",
        "NEWSMON_FETCH_ALLOW_PRIVATE_HOSTS": "true",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",  # the monitor runs as soon as it is parsed
    }
    newsmon = [sys.executable, "-m", "pipeline"]
    log = (tmp_path / "airflow.log").open("w")
    supervisor = subprocess.Popen(
        [*newsmon, "airflow", "start", "--home", str(home), "--port", str(port)],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

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

        stopped = subprocess.run(
            [*newsmon, "airflow", "stop", "--home", str(home)],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr
        assert supervisor.wait(timeout=30) == 0, log_tail()
    finally:
        if supervisor.poll() is None:  # a failed assertion: stop it as Ctrl-C would
            supervisor.terminate()
            supervisor.wait(timeout=120)
    survivors = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert survivors == [], [" ".join(p.cmdline()) for p in survivors]
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))  # nothing listens on the UI's port any more
