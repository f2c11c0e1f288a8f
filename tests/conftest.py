"""Real servers on loopback for the whole suite: Elasticsearch, HTTP, SMTP."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from elasticsearch import Elasticsearch

from pipeline.config import PROJECT_ROOT, Settings, load_settings
from pipeline.es import Indices, connect, open_store
from pipeline.esnode import EmbeddedNode
from pipeline.setup import setup_indices
from tests.servers import FeedServer, SmtpServer, running_node

CONFIG_DIR = PROJECT_ROOT / "config"
DATA = Path(__file__).parent / "data"
# Each run builds on a pool of its own, as with NEWSMON_POOL_KEEP_WARM_SECONDS=0: a warm service per
# test's settings would outlive the test by the default keep-warm time. test_warmpool turns it on.
NO_WARM_POOL = {"NEWSMON_POOL_KEEP_WARM_SECONDS": "0"}


def pytest_configure(config: pytest.Config) -> None:
    os.environ.update(NO_WARM_POOL)


@pytest.fixture(scope="session")
def es_embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNode]:
    """One embedded node for the session, stopped at the end even when tests fail."""
    settings = Settings(var_dir=tmp_path_factory.mktemp("var"))
    node = EmbeddedNode(settings, instance=f"pytest-{uuid.uuid4().hex[:8]}")
    with running_node(node):
        yield node


@pytest.fixture(scope="session")
def es_node(es_embedded: EmbeddedNode) -> str:
    """The session node's URL."""
    info = es_embedded.info()
    assert info is not None, "the session's node stopped"
    return info.url


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    es_node: str,
    cache_dir: Path,
) -> Path:
    """Environment of one test: its own index prefix (set up), var dir and a copy of config/."""
    config_dir = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config_dir)
    for name in list(os.environ):
        if name.startswith("NEWSMON_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NEWSMON_ES_URL", es_node)
    monkeypatch.setenv("NEWSMON_INDEX_PREFIX", f"t{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("NEWSMON_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("NEWSMON_ALERT_OUTBOX", str(tmp_path / "var" / "outbox"))
    monkeypatch.setenv("NEWSMON_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv("NEWSMON_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("NEWSMON_FETCH_ALLOW_PRIVATE_HOSTS", "true")
    monkeypatch.setenv("NEWSMON_WORKERS", "1")  # one worker process: the pool has tests of its own
    for name, value in NO_WARM_POOL.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    setup_indices(connect(settings), settings)  # what `newsmon setup` does before the runtime starts
    return config_dir


@pytest.fixture
def settings(env: Path) -> Settings:
    return load_settings()


@pytest.fixture
def store(settings: Settings) -> tuple[Elasticsearch, Indices]:
    return open_store(settings)


Server = TypeVar("Server", FeedServer, SmtpServer)


def _serving(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    yield from _serving(FeedServer())


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from _serving(SmtpServer())


@pytest.fixture
def mail_settings(env: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> SmtpServer:
    """Alerts of this test go to the loopback aiosmtpd server."""
    monkeypatch.setenv("NEWSMON_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NEWSMON_SMTP_PORT", str(smtp_server.port))
    return smtp_server


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests import faults

    if faults.tally.counts["tried"]:
        terminalreporter.write_line(f"fault suite: {faults.tally.summary()}")
