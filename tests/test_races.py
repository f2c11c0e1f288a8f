"""Races between processes that share one cluster: set-up, `newsmon es start`, two pollers of one feed.

Each test starts the competitors together on real servers and checks what a user
would see afterwards: every index there, one node, no feed-state field lost.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
from elasticsearch import Elasticsearch

from pipeline.config import PROJECT_ROOT, Settings, load_settings
from pipeline.es import Indices, connect
from pipeline.esnode import EmbeddedNode
from pipeline.run import configured_feeds, poll_stage
from pipeline.setup import TEMPLATES, pending
from tests.pages import EXPORT_CONTROL_PARAGRAPHS, article_html, rss, write_feeds
from tests.servers import FeedServer

NEWSMON = [sys.executable, "-m", "pipeline"]


def start_together(commands: list[list[str]], env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    """Start every command at once, then wait for all of them."""
    procs = [
        subprocess.Popen(c, env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    done = []
    for command, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(command, proc.returncode, out, err))
    return done


def test_setup_run_by_several_processes_at_once_leaves_every_index_and_template(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"r{uuid.uuid4().hex[:10]}"  # nobody has set it up
    monkeypatch.setenv("NEWSMON_INDEX_PREFIX", prefix)
    results = start_together([[*NEWSMON, "setup", "--no-seeds"] for _ in range(4)], dict(os.environ))
    assert all(r.returncode == 0 for r in results), [r.stderr[-2000:] for r in results]

    settings = load_settings()
    es = connect(settings)
    indices = Indices(prefix)
    templates = es.indices.get_index_template(name=f"{prefix}-*")["index_templates"]
    assert sorted(t["name"] for t in templates) == sorted(f"{prefix}-{name}" for name in TEMPLATES)
    assert es.indices.exists_alias(name=indices.articles)
    assert all(es.indices.exists(index=getattr(indices, name)) for name in ("feeds", "entries", "alerts"))
    assert list(es.indices.get_alias(name=indices.articles)) == [indices.articles_first]
    assert pending(es, settings) == [], "setup --check has nothing left to do"


def node_processes(node_dir: Path) -> list[psutil.Process]:
    """Elasticsearch server JVMs running from this node's folder."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "org.elasticsearch.bootstrap.Elasticsearch" in cmdline and str(node_dir) in cmdline:
            found.append(proc)
    return found


def test_two_es_start_at_once_share_one_node(tmp_path: Path) -> None:
    instance = f"pytest-race-{uuid.uuid4().hex[:8]}"
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEWSMON_")},
        "NEWSMON_ES_INSTANCE": instance,
        "NEWSMON_VAR_DIR": str(tmp_path / "var"),
    }
    node = EmbeddedNode(Settings(var_dir=tmp_path / "var", es_instance=instance))
    try:
        results = start_together([[*NEWSMON, "es", "start"] for _ in range(2)], environ)
        assert all(r.returncode == 0 for r in results), [r.stderr[-2000:] for r in results]
        lines = [r.stdout.strip().splitlines()[-1] for r in results]
        assert lines[0].startswith("Elasticsearch running at http://127.0.0.1:")
        assert lines[0] == lines[1], "both report the same node"
        assert len(node_processes(node.dir)) == 1
    finally:
        node.stop()
        shutil.rmtree(node.dir, ignore_errors=True)
    assert node_processes(node.dir) == []


def test_two_pollers_of_one_feed_keep_each_others_fields(
    env: Path, store: tuple[Elasticsearch, Indices], feed_server: FeedServer
) -> None:
    """The monitor and maintenance's forced retry poll one feed with the same state loaded.

    The first to get the feed queues its new entries and records `last_new_entry_at`;
    the second finds them queued already. Its write must not put back the old value.
    """
    es, indices = store
    links = [feed_server.add(f"/a/{i}.html", article_html(f"出口管制{i}", EXPORT_CONTROL_PARAGRAPHS)) for i in range(2)]
    # Each poll waits 2 s for the feed, so the second poller loads the state before the first saves it.
    feed_server.add(
        "/feed.xml",
        rss("t", [{"title": f"出口管制{i}", "link": u} for i, u in enumerate(links)]),
        content_type="application/rss+xml",
        delay=2.0,
    )
    write_feeds(env, [("local", feed_server.url("/feed.xml"), "zh")])
    settings = load_settings()
    feeds = configured_feeds(settings)
    first_at = datetime.now(UTC)
    counts: dict[str, dict] = {}

    def poller(name: str, now: datetime) -> None:
        counts[name] = poll_stage(settings, es, indices, feeds, now, force=True)

    first = threading.Thread(target=poller, args=("first", first_at))
    second = threading.Thread(target=poller, args=("second", first_at + timedelta(seconds=1)))
    first.start()
    threading.Event().wait(0.7)
    second.start()
    first.join()
    second.join()

    assert (counts["first"]["new"], counts["second"]["new"]) == (2, 0)
    state = es.get(index=indices.feeds, id="local")["_source"]
    assert state["last_new_entry_at"] == first_at.isoformat(), "the second poll kept the first one's field"
    assert state["last_polled_at"] == (first_at + timedelta(seconds=1)).isoformat()
    assert state["first_success_at"] and state["consecutive_errors"] == 0
