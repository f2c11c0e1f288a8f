"""Least privilege on a real node with the security module on, as the compose stack deploys.

A user holding only `newsmon_setup` runs `newsmon setup` and `newsmon api-key create`; the
whole monitor then runs on that API key alone (NEWSMON_ES_API_KEY_FILE), which is limited to
the `newsmon_pipeline` role and cannot administer anything. An analyst of the
`newsmon_analyst` role reads articles, feed health and feed entries, and nothing else.

The people (deployer, analyst) come from the file realm; the key lives in the `.security`
index, which the integ-test node can create thanks to newsmon-security-index-analysis
(pipeline/esplugin.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from elasticsearch import AuthenticationException, AuthorizationException, Elasticsearch
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import Settings, load_settings
from pipeline.es import Indices, connect
from pipeline.esnode import EmbeddedNode, FileRealm
from pipeline.security import roles_yml
from tests.pages import EXPORT_CONTROL_PARAGRAPHS, article_html, rss, write_feeds
from tests.servers import FeedServer, SmtpServer, running_node
from tests.test_alerts import write_rules

PASSWORDS = {name: uuid.uuid4().hex for name in ("admin", "deployer", "analyst")}
ROLES = {"admin": "superuser", "deployer": "newsmon_setup", "analyst": "newsmon_analyst"}
runner = CliRunner()


@pytest.fixture(scope="module")
def secured_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A node of its own with security on and the project's roles (config/security/roles.json)."""
    settings = Settings(var_dir=tmp_path_factory.mktemp("secure-var"))
    realm = FileRealm(users=[(n, PASSWORDS[n], ROLES[n]) for n in PASSWORDS], roles_yml=roles_yml(settings))
    node = EmbeddedNode(settings, instance=f"pytest-secure-{uuid.uuid4().hex[:8]}", security=realm)
    with running_node(node) as info:
        yield info.url


def login(monkeypatch: pytest.MonkeyPatch, user: str) -> None:
    monkeypatch.setenv("NEWSMON_ES_USERNAME", user)
    monkeypatch.setenv("NEWSMON_ES_PASSWORD", PASSWORDS[user])


@pytest.fixture
def deployed(env: Path, secured_node: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """`newsmon setup` and `newsmon api-key create` by a user holding only newsmon_setup;
    then the pipeline's settings: the key file and nothing else."""
    monkeypatch.setenv("NEWSMON_ES_URL", secured_node)
    monkeypatch.setenv("NEWSMON_INDEX_PREFIX", "newsmon")  # the names the roles grant
    login(monkeypatch, "deployer")
    done = runner.invoke(app, ["setup"])
    assert done.exit_code == 0, done.output
    key_file = env.parent / "secrets" / "es_api_key"
    created = runner.invoke(app, ["api-key", "create", "--out", str(key_file)])
    assert created.exit_code == 0, created.output
    monkeypatch.delenv("NEWSMON_ES_USERNAME")
    monkeypatch.delenv("NEWSMON_ES_PASSWORD")
    monkeypatch.setenv("NEWSMON_ES_API_KEY_FILE", str(key_file))
    return load_settings()


def test_the_pipeline_runs_end_to_end_with_its_api_key_and_cannot_administer(
    env: Path,
    deployed: Settings,
    feed_server: FeedServer,
    mail_settings: SmtpServer,
) -> None:
    today = datetime.now(UTC).isoformat(timespec="seconds")  # young enough for the rule's max_age_days
    story = feed_server.add(
        "/news/1.html", article_html("中方对日实施两用物项出口管制", EXPORT_CONTROL_PARAGRAPHS, published=today)
    )
    feed_server.add("/feed.xml", rss("t", [{"title": "1", "link": story}]))
    write_feeds(env, [("local", feed_server.url("/feed.xml"), "zh-Hans")])
    write_rules(env)

    done = runner.invoke(app, ["run", "--once"])
    assert done.exit_code == 0, done.output
    assert len(mail_settings.messages) == 1, done.output
    settings = load_settings()
    es = connect(settings)
    assert es.security.authenticate()["authentication_type"] == "api_key"  # the key, not a password
    indices = Indices(settings.index_prefix)
    assert es.count(index=indices.articles, query={"term": {"source.kind": "feed"}})["count"] == 1
    assert runner.invoke(app, ["search", "兩用物項"]).exit_code == 0

    with pytest.raises(AuthorizationException):
        es.indices.delete(index=indices.articles_first)
    with pytest.raises(AuthorizationException):
        es.indices.put_index_template(name=f"{settings.index_prefix}-articles", index_patterns=["x-*"])
    with pytest.raises(AuthorizationException):
        es.indices.create(index=f"{settings.index_prefix}-articles-000099")
    with pytest.raises(AuthorizationException):
        es.search(index="other-team-index")  # nothing outside its own indices
    refused = runner.invoke(app, ["setup", "--no-seeds"])
    assert refused.exit_code == 1
    assert "newsmon_setup" in refused.stderr  # says which role the step needs


def test_a_new_key_retires_the_old_one(deployed: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    assert deployed.es_api_key_file is not None
    old = connect(deployed)
    old.count(index=Indices(deployed.index_prefix).articles)
    login(monkeypatch, "deployer")
    assert runner.invoke(app, ["api-key", "create", "--out", str(deployed.es_api_key_file)]).exit_code == 0

    with pytest.raises(AuthenticationException):
        old.count(index=Indices(deployed.index_prefix).articles)
    monkeypatch.delenv("NEWSMON_ES_USERNAME")
    monkeypatch.delenv("NEWSMON_ES_PASSWORD")
    new = connect(load_settings())  # reads the rewritten file
    assert new.count(index=Indices(deployed.index_prefix).articles)["count"] > 0


def test_an_analyst_reads_articles_and_feeds_only(deployed: Settings, secured_node: str) -> None:
    indices = Indices(deployed.index_prefix)
    analyst = Elasticsearch(secured_node, basic_auth=("analyst", PASSWORDS["analyst"]))

    assert analyst.count(index=indices.articles)["count"] > 0  # the seeds loaded by setup
    analyst.search(index=indices.feeds, size=1)
    analyst.search(index=indices.entries, size=0, aggs={"kinds": {"terms": {"field": "error_kind"}}})  # ops' chart
    with pytest.raises(AuthorizationException):
        analyst.index(index=indices.articles, document={"title": "x"})
    with pytest.raises(AuthorizationException):
        analyst.index(index=indices.entries, document={"state": "done"})
    with pytest.raises(AuthorizationException):
        analyst.search(index=indices.alerts)  # recipients and message ids are ops' business
    with pytest.raises(AuthorizationException):
        analyst.indices.delete(index=indices.articles_first)
