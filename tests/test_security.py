"""Least privilege on a real node with the security module on.

A user holding only `newsmon_setup` runs `newsmon setup`; the whole monitor then
runs as a user holding only `newsmon_pipeline` (the role the compose stack's API
key is limited to), which cannot administer anything. An analyst of the
`newsmon_analyst` role reads articles and feed health, and nothing else.

The integ-test node cannot create the `.security` index (its mapping needs the
analysis-common module), so users and roles come from the file realm here and
API keys cannot be made; a key limited by a role descriptor has exactly that
role's privileges.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from elasticsearch import AuthorizationException, Elasticsearch
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import Settings, load_settings
from pipeline.es import Indices, connect
from pipeline.esnode import EmbeddedNode, FileRealm
from pipeline.security import roles_yml
from tests.pages import EXPORT_CONTROL_PARAGRAPHS, article_html, rss, write_feeds
from tests.servers import FeedServer, SmtpServer, running_node
from tests.test_alerts import write_rules

PASSWORDS = {name: uuid.uuid4().hex for name in ("admin", "deployer", "pipeline", "analyst")}
ROLES = {
    "admin": "superuser",
    "deployer": "newsmon_setup",
    "pipeline": "newsmon_pipeline",
    "analyst": "newsmon_analyst",
}
runner = CliRunner()


@pytest.fixture(scope="module")
def secured_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A node of its own with security on and the project's roles (config/security/roles.json)."""
    settings = Settings(var_dir=tmp_path_factory.mktemp("secure-var"))
    realm = FileRealm(users=[(n, PASSWORDS[n], ROLES[n]) for n in PASSWORDS], roles_yml=roles_yml(settings))
    node = EmbeddedNode(settings, instance=f"pytest-secure-{uuid.uuid4().hex[:8]}", security=realm)
    with running_node(node) as url:
        yield url


def login(monkeypatch: pytest.MonkeyPatch, user: str) -> None:
    monkeypatch.setenv("NEWSMON_ES_USERNAME", user)
    monkeypatch.setenv("NEWSMON_ES_PASSWORD", PASSWORDS[user])


@pytest.fixture
def deployed(env: Path, secured_node: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """`newsmon setup` run by a user holding only newsmon_setup; then the pipeline's login."""
    monkeypatch.setenv("NEWSMON_ES_URL", secured_node)
    monkeypatch.setenv("NEWSMON_INDEX_PREFIX", "newsmon")  # the names the roles grant
    login(monkeypatch, "deployer")
    done = runner.invoke(app, ["setup"])
    assert done.exit_code == 0, done.output
    login(monkeypatch, "pipeline")
    return load_settings()


def test_the_pipeline_runs_end_to_end_with_its_role_and_cannot_administer(
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


def test_an_analyst_reads_articles_and_feeds_only(deployed: Settings, secured_node: str) -> None:
    indices = Indices(deployed.index_prefix)
    analyst = Elasticsearch(secured_node, basic_auth=("analyst", PASSWORDS["analyst"]))

    assert analyst.count(index=indices.articles)["count"] > 0  # the seeds loaded by setup
    analyst.search(index=indices.feeds, size=1)
    with pytest.raises(AuthorizationException):
        analyst.index(index=indices.articles, document={"title": "x"})
    with pytest.raises(AuthorizationException):
        analyst.search(index=indices.alerts)  # recipients and message ids are ops' business
    with pytest.raises(AuthorizationException):
        analyst.indices.delete(index=indices.articles_first)
