"""The seeds searchable in a real Elasticsearch; settings and errors users see."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import PROJECT_ROOT
from pipeline.connections import settings_from_connections
from pipeline.es import Indices, connect

SEED_IDS = {
    "seed-000_6a024b3a6c380766",
    "seed-001_1ebeefc35d0a17ab",
    "seed-002_ec1d4c06d4d6a313",
    "seed-003_534769c048fecea1",
}
runner = CliRunner()


def newsmon(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def count(es: Elasticsearch, indices: Indices) -> int:
    es.indices.refresh(index=indices.articles)
    return int(es.count(index=indices.articles)["count"])


def test_template_maps_published_at_as_date(store: tuple[Elasticsearch, Indices]) -> None:
    es, indices = store
    newsmon("seeds", "load")
    mapping = es.indices.get_mapping(index=indices.articles)
    props = next(iter(mapping.values()))["mappings"]["properties"]
    assert props["published_at"]["type"] == "date"
    assert props["body"]["analyzer"] == "newsmon_text"
    assert props["body"]["search_analyzer"] == "newsmon_text_query"
    assert es.indices.get_alias(name=indices.articles)


def test_loading_seeds_twice_leaves_four_documents(store: tuple[Elasticsearch, Indices]) -> None:
    es, indices = store
    newsmon("seeds", "load")
    newsmon("seeds", "load")
    assert count(es, indices) == 4
    kinds = es.search(index=indices.articles, size=10, source=["source.kind"])["hits"]["hits"]
    assert {h["_id"] for h in kinds} == SEED_IDS
    assert {h["_source"]["source"]["kind"] for h in kinds} == {"seed"}


@pytest.mark.parametrize("query", ["两用物项", "兩用物項"])
def test_search_finds_all_seeds_in_either_script(store: tuple[Elasticsearch, Indices], query: str) -> None:
    newsmon("seeds", "load")
    hits = json.loads(newsmon("search", query, "--json"))
    assert {h["id"] for h in hits} == SEED_IDS
    for hit in hits:
        assert hit["source"]["kind"] == "seed" and hit["source"]["name"]
        assert hit["published_at"].startswith("2026-01")
        assert hit["score"] > 0 and hit["title"]


def test_traditional_only_seeds_are_found_by_the_simplified_word(store: tuple[Elasticsearch, Indices]) -> None:
    es, indices = store
    newsmon("seeds", "load")
    for seed in ("seed-001_1ebeefc35d0a17ab", "seed-002_ec1d4c06d4d6a313"):
        body = es.get(index=indices.articles, id=seed)["_source"]["body"]
        assert "兩用物項" in body and "两用物项" not in body
    table = newsmon("search", "两用物项", "--limit", "10")
    assert "4 hits" in table


def test_indexed_seed_bodies_carry_no_clutter(store: tuple[Elasticsearch, Indices]) -> None:
    es, indices = store
    newsmon("seeds", "load")
    for hit in es.search(index=indices.articles, size=10)["hits"]["hits"]:
        body = hit["_source"]["body"]
        for clutter in ("特别声明", "特別聲明", "李显龙担忧新加坡陷入衰退", "Notice:", "![]()", "阅读:", "分享至"):
            assert clutter not in body, (hit["_id"], clutter)
        assert len(body) > 1500


def test_unreachable_es_url_is_one_line_naming_the_url(env: Path) -> None:
    bad = "http://127.0.0.1:9"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "search", "稀土"],
        env={**_env_without_newsmon(), "NEWSMON_ES_URL": bad, "NEWSMON_CONFIG_DIR": str(env)},
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert bad in lines[0] and "unreachable" in lines[0]
    assert "Traceback" not in done.stderr


def test_config_show_masks_secrets(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSMON_SMTP_PASSWORD", "hunter2")
    monkeypatch.setenv("NEWSMON_SMTP_HOST", "mail.example.org")
    shown = json.loads(newsmon("config", "show", "--config-dir", str(env)))
    assert shown["smtp_password"] == "***"
    assert shown["smtp_host"] == "mail.example.org"
    assert shown["config_dir"] == str(env)
    assert "hunter2" not in json.dumps(shown)


def test_credentials_in_the_es_url_are_masked_in_config_show_and_errors(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "http://elastic:s3cret-pw@127.0.0.1:9"
    monkeypatch.setenv("NEWSMON_ES_URL", url)
    shown = json.loads(newsmon("config", "show"))
    assert shown["es_url"] == "http://elastic:***@127.0.0.1:9"
    # The ops address and the schedule are settings like any other.
    assert shown["ops_email"] == "ops@localhost" and shown["monitor_every_minutes"] == 5
    failed = runner.invoke(app, ["search", "稀土"])
    assert failed.exit_code == 1 and "elastic:***@127.0.0.1:9" in failed.stderr
    assert "s3cret-pw" not in failed.stderr + failed.stdout


def test_task_logs_carry_client_request_lines_only_when_asked_for(
    env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_connection(conn_id: str) -> None:
        raise LookupError(conn_id)

    caplog.set_level(logging.DEBUG)

    def request_lines() -> list[logging.LogRecord]:
        caplog.clear()
        settings, _ = settings_from_connections(no_connection, LookupError)
        connect(settings).cluster.health()
        return [r for r in caplog.records if r.name.startswith(("elastic_transport", "urllib3"))]

    assert request_lines() == []
    monkeypatch.setenv("NEWSMON_CLIENT_LOG_LEVEL", "INFO")
    lines = request_lines()
    assert lines and all(r.levelno == logging.INFO and r.name.startswith("elastic_transport") for r in lines)
    monkeypatch.setenv("NEWSMON_CLIENT_LOG_LEVEL", "WARNING")
    assert request_lines() == []


def test_bad_setting_is_named(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSMON_SMTP_SECURITY", "sometimes")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 1
    assert "NEWSMON_SMTP_SECURITY" in result.stderr


def _env_without_newsmon() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("NEWSMON_")}
