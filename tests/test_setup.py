"""`newsmon setup` on the real node: templates carry a version, and a changed template reaches existing data.

Each test starts from a prefix nobody has set up, installs an "old" template,
indexes documents under it, then changes config/templates/articles.json as a
developer would and runs setup again.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch, helpers
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import Settings, load_settings
from pipeline.es import Indices, NotSetUp, connect, open_store
from pipeline.fetch import FetchError, FetchReason
from pipeline.index import bulk_index
from pipeline.setup import Change, SetupError, index_meta, scheduled_setup, setup_indices, write_index

runner = CliRunner()


@pytest.fixture
def fresh(env: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings on an index prefix that setup has not touched yet."""
    monkeypatch.setenv("NEWSMON_INDEX_PREFIX", f"s{uuid.uuid4().hex[:10]}")
    return load_settings()


def articles_template(settings: Settings) -> Path:
    return settings.config_dir / "templates" / "articles.json"


def change_template(settings: Settings, change: Any) -> None:
    """Edit the articles template file in the test's config copy and bump its version."""
    path = articles_template(settings)
    body = json.loads(path.read_text(encoding="utf-8"))
    change(body["template"]["mappings"]["properties"])
    body["version"] += 1
    path.write_text(json.dumps(body, ensure_ascii=False, indent=2), encoding="utf-8")


def docs(n: int, start: int = 0) -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            f"doc-{i}",
            {
                "url": f"https://example.org/{i}",
                "title": f"出口管制 {i}",
                "author": f"記者{i % 3}",
                "keywords": ["出口管制", f"k{i % 5}"],
                "published_at": "2026-01-06T08:00:00+00:00",
            },
        )
        for i in range(start, start + n)
    ]


def count(es: Elasticsearch, indices: Indices, **query: Any) -> int:
    es.indices.refresh(index=indices.articles)
    return int(es.count(index=indices.articles, query=query or {"match_all": {}})["count"])


def test_runtime_refuses_a_cluster_that_was_not_set_up(fresh: Settings) -> None:
    with pytest.raises(NotSetUp, match="newsmon setup"):
        open_store(fresh)
    result = runner.invoke(app, ["poll"])
    assert result.exit_code == 1
    assert "run `newsmon setup`" in result.stderr


def test_setup_creates_versioned_indices_and_is_repeatable(fresh: Settings) -> None:
    result = runner.invoke(app, ["setup", "--check"])
    assert result.exit_code == 1 and "missing" in result.stdout
    result = runner.invoke(app, ["setup"])
    assert result.exit_code == 0, result.output
    assert f"{fresh.index_prefix}-articles: created" in result.stdout
    assert "seed articles indexed" in result.stdout

    es, indices = open_store(fresh)
    index = write_index(es, indices.articles)
    assert index == indices.articles_first
    assert index_meta(es, index)["version"] == json.loads(articles_template(fresh).read_text())["version"]
    template = es.indices.get_index_template(name=f"{fresh.index_prefix}-articles")["index_templates"][0]
    assert template["index_template"]["version"] == index_meta(es, index)["version"]
    seeds = count(es, indices)
    assert seeds > 0  # the data views have documents before the first DAG run

    again = runner.invoke(app, ["setup"])
    assert again.exit_code == 0 and f"{fresh.index_prefix}-articles: unchanged" in again.stdout
    assert count(es, indices) == seeds
    assert runner.invoke(app, ["setup", "--check"]).exit_code == 0


def test_a_field_added_later_is_searchable_on_old_documents(fresh: Settings) -> None:
    # The "old" template did not map `author`; the documents carry it in _source all the same.
    change_template(fresh, lambda props: props.pop("author"))
    es = connect(fresh)
    setup_indices(es, fresh)
    indices = Indices(fresh.index_prefix)
    bulk_index(es, indices, docs(30))
    assert count(es, indices, term={"author": "記者1"}) == 0

    change_template(fresh, lambda props: props.update(author={"type": "keyword", "ignore_above": 2048}))
    report = setup_indices(es, fresh)

    assert report.changes[indices.articles] is Change.MAPPING_UPDATED
    assert write_index(es, indices.articles) == indices.articles_first  # same index, no copy
    assert count(es, indices, term={"author": "記者1"}) == 10
    assert count(es, indices) == 30


def test_setup_rewrites_quarantined_articles_stored_with_their_count_in_the_reason(fresh: Settings) -> None:
    # The template before extraction_attempts, and articles as the code of then wrote them.
    shipped = articles_template(fresh).read_text(encoding="utf-8")
    change_template(fresh, lambda props: props.pop("extraction_attempts"))
    es = connect(fresh)
    setup_indices(es, fresh)
    indices = Indices(fresh.index_prefix)
    reasons = ["quarantined after 3 unfinished attempts", "quarantined after 1 unfinished attempts", "timeout"]
    stored = [(i, d | {"extraction": "failed", "extraction_reason": reasons[n]}) for n, (i, d) in enumerate(docs(3))]
    bulk_index(es, indices, stored)

    articles_template(fresh).write_text(shipped, encoding="utf-8")
    result = runner.invoke(app, ["setup", "--no-seeds"])
    assert result.exit_code == 0, result.output
    assert "2 stored documents rewritten in the current shape" in result.stdout
    assert count(es, indices, term={"extraction_reason": "quarantined"}) == 2
    assert count(es, indices, term={"extraction_attempts": 3}) == 1, "the count is a field of its own"
    after = {h["_id"]: h["_source"] for h in es.search(index=indices.articles)["hits"]["hits"]}
    assert [after[i].get("extraction_attempts") for i, _ in stored] == [3, 1, None]
    assert after["doc-2"]["extraction_reason"] == "timeout"
    assert after["doc-0"]["title"] == stored[0][1]["title"], "the rest of the article is kept"

    again = runner.invoke(app, ["setup", "--no-seeds"])
    assert again.exit_code == 0 and "rewritten" not in again.stdout
    assert count(es, indices, term={"extraction_reason": "quarantined"}) == 2


def test_setup_gives_entries_marked_before_error_kind_the_kind_of_their_last_error(fresh: Settings) -> None:
    # The entries template before error_kind, and entries as the code of then marked them.
    template = fresh.config_dir / "templates" / "entries.json"
    shipped = template.read_text(encoding="utf-8")
    before = json.loads(shipped)
    before["template"]["mappings"]["properties"].pop("error_kind")
    before["version"] -= 1
    template.write_text(json.dumps(before), encoding="utf-8")
    es = connect(fresh)
    setup_indices(es, fresh)
    indices = Indices(fresh.index_prefix)
    refused = "{'type': 'document_parsing_exception', 'reason': '[1:120] failed to parse field [published_at]'}"
    marked = {  # id: (last_error, state, the kind setup must give it)
        "gone": (str(FetchError("https://example.org/gone", FetchReason.HTTP_STATUS, status=404)), "done", "http"),
        "dns": (str(FetchError("https://x.example/", FetchReason.DNS_ERROR, "no address")), "retry", "dns_error"),
        "crash": ("quarantined after 2 attempts: worker_died", "failed", "worker_died"),
        "hang": ("timeout (attempt 1)", "retry", "extraction_timeout"),
        "bug": ("quarantined after 2 attempts: error: KeyError", "failed", "build_error"),
        "untried": ("quarantined after 3 unfinished attempts", "failed", "unfinished"),
        "refused": (refused, "failed", "rejected"),
    }
    entries = [{"_id": i, "_source": {"state": state, "last_error": text}} for i, (text, state, _) in marked.items()]
    entries.append({"_id": "ok", "_source": {"state": "done", "last_error": None}})
    helpers.bulk(es, entries, index=indices.entries, refresh=True)

    template.write_text(shipped, encoding="utf-8")
    result = runner.invoke(app, ["setup", "--no-seeds"])
    assert result.exit_code == 0, result.output
    assert f"{len(marked)} stored documents rewritten in the current shape" in result.stdout
    es.indices.refresh(index=indices.entries)
    stored = {h["_id"]: h["_source"] for h in es.search(index=indices.entries, size=20)["hits"]["hits"]}
    assert {i: e.get("error_kind") for i, e in stored.items()} == {i: k for i, (_, _, k) in marked.items()} | {
        "ok": None
    }
    assert stored["gone"]["last_error"] == marked["gone"][0], "the text stays beside its kind"
    assert es.count(index=indices.entries, query={"term": {"error_kind": "http"}})["count"] == 1, "mapped"

    again = runner.invoke(app, ["setup", "--no-seeds"])
    assert again.exit_code == 0 and "rewritten" not in again.stdout


def test_a_breaking_change_reindexes_behind_the_alias_while_the_pipeline_writes(fresh: Settings) -> None:
    es = connect(fresh)
    setup_indices(es, fresh)
    indices = Indices(fresh.index_prefix)
    bulk_index(es, indices, docs(600))
    bulk_index(es, indices, [("doc-7", {**docs(1, 7)[0][1], "title": "更新后的标题"})])  # version 2

    # keyword -> text: Elasticsearch cannot change a field's type on an existing index.
    change_template(fresh, lambda props: props.update(keywords={"type": "text", "analyzer": "whitespace"}))

    # The pipeline keeps indexing through the alias, in small requests, during the whole migration.
    written: list[str] = []
    stop = threading.Event()

    def pipeline() -> None:
        writer = connect(fresh)
        batch = 600
        while not stop.is_set() or batch < 640:
            new = docs(5, batch)
            bulk_index(writer, indices, new)
            written.extend(doc_id for doc_id, _ in new)
            batch += 5

    thread = threading.Thread(target=pipeline)
    thread.start()
    try:
        report = setup_indices(es, fresh)
    finally:
        stop.set()
        thread.join(timeout=120)

    assert report.changes[indices.articles] is Change.REINDEXED
    new_index = write_index(es, indices.articles)
    assert new_index == f"{fresh.index_prefix}-articles-000002"
    assert not es.indices.exists(index=indices.articles_first)
    # Every document once: the 600 old ones and each one written during the migration.
    assert count(es, indices) == 600 + len(written)
    ids = {h["_id"] for h in es.search(index=indices.articles, size=10_000, source=False)["hits"]["hits"]}
    assert ids == {f"doc-{i}" for i in range(600)} | set(written)
    # The newer version survived the copy, and the new mapping applies to old documents.
    assert es.get(index=indices.articles, id="doc-7")["_source"]["title"] == "更新后的标题"
    assert count(es, indices, match={"keywords": "k3"}) >= 120
    assert index_meta(es, new_index)["version"] == json.loads(articles_template(fresh).read_text())["version"]
    assert setup_indices(es, fresh).changes[indices.articles] is Change.UNCHANGED


def test_the_maintenance_dag_applies_changes_only_with_the_privileged_connection(fresh: Settings) -> None:
    setup_indices(connect(fresh), fresh)
    change_template(fresh, lambda props: props.update(summary_words={"type": "text", "analyzer": "whitespace"}))
    alias = Indices(fresh.index_prefix).articles

    with pytest.raises(SetupError, match=r"run `newsmon setup`.*built from another articles template"):
        scheduled_setup(fresh, None)  # the runtime connection only: checks, changes nothing
    assert scheduled_setup(fresh, fresh)[alias] == Change.MAPPING_UPDATED.value
    assert scheduled_setup(fresh, None) == {"pending": 0}
