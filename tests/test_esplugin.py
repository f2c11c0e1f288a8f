"""newsmon's analysis plugin, built by Maven and installed by the launcher, on the real node."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from elasticsearch import BadRequestError, Elasticsearch

from pipeline.esplugin import PLUGIN_NAME, SOURCES, PluginError, build_zip, source_digest

ANALYSIS = {
    "analyzer": {
        "index_side": {"type": "custom", "tokenizer": "standard", "filter": ["newsmon_fold", "newsmon_cjk_bigram"]},
        "query_side": {"type": "custom", "tokenizer": "standard", "filter": ["newsmon_fold", "newsmon_cjk_word"]},
    }
}


@pytest.fixture(scope="module")
def client(es_node: str) -> Elasticsearch:
    return Elasticsearch(es_node)


@pytest.fixture(scope="module")
def index(client: Elasticsearch) -> str:
    name = f"plugin-{uuid.uuid4().hex[:8]}"
    client.indices.create(index=name, settings={"analysis": ANALYSIS})
    return name


def tokens(client: Elasticsearch, index: str, analyzer: str, text: str) -> list[tuple[str, int, int]]:
    found = client.indices.analyze(index=index, analyzer=analyzer, text=text)["tokens"]
    return [(t["token"], t["position"], t.get("positionLength", 1)) for t in found]


def test_both_scripts_index_as_the_same_bigrams(client: Elasticsearch, index: str) -> None:
    simplified = tokens(client, index, "index_side", "两用物项")
    assert simplified == [("两用", 0, 1), ("用物", 1, 1), ("物项", 2, 1)]
    assert tokens(client, index, "index_side", "兩用物項") == simplified


def test_fold_is_nfkc_and_case_insensitive(client: Elasticsearch, index: str) -> None:
    assert tokens(client, index, "index_side", "ＥＸＰＯＲＴ Controls") == [("export", 0, 1), ("controls", 1, 1)]


def test_japanese_runs_become_bigrams_and_a_lone_character_stays(client: Elasticsearch, index: str) -> None:
    found = [t for t, _, _ in tokens(client, index, "index_side", "レアアース、用")]
    assert found == ["レア", "アア", "アー", "ース", "用"]


def test_query_side_spans_each_run_with_one_token(client: Elasticsearch, index: str) -> None:
    # The spanning token makes the stream a graph, which match queries search as a phrase.
    assert tokens(client, index, "query_side", "兩用物項 export") == [
        ("两用物项", 0, 3),
        ("两用", 0, 1),
        ("用物", 1, 1),
        ("物项", 2, 1),
        ("export", 3, 1),
    ]


def test_query_side_filter_is_refused_at_index_time(client: Elasticsearch) -> None:
    with pytest.raises(BadRequestError, match="newsmon_cjk_word"):
        client.indices.create(
            index=f"plugin-bad-{uuid.uuid4().hex[:8]}",
            settings={"analysis": ANALYSIS},
            mappings={"properties": {"body": {"type": "text", "analyzer": "query_side"}}},
        )


def test_plugin_zip_is_rebuilt_only_when_its_sources_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = tmp_path / "analysis-plugin"
    shutil.copytree(SOURCES, sources, ignore=shutil.ignore_patterns("target"))
    before = source_digest(sources)
    cached = tmp_path / "cache" / f"{PLUGIN_NAME}-{before[:16]}.zip"
    cached.parent.mkdir()
    cached.write_bytes(b"built earlier")
    monkeypatch.setenv("PATH", str(tmp_path / "no-maven-here"))
    assert build_zip(cached.parent, sources) == cached  # no Maven needed: the cached zip is used

    fold = next(sources.rglob("Fold.java"))
    fold.write_text(fold.read_text(encoding="utf-8") + "\n// changed\n", encoding="utf-8")
    assert source_digest(sources) != before
    with pytest.raises(PluginError, match="mvn not found"):
        build_zip(cached.parent, sources)
