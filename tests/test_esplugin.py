"""newsmon's plugins, built by Maven and installed by the launcher, on the real node."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from elasticsearch import BadRequestError, Elasticsearch

from pipeline.esplugin import ANALYSIS as ANALYSIS_PLUGIN
from pipeline.esplugin import Plugin, PluginError, build_zip, source_digest

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


def test_tokens_folding_alone_and_tokens_folding_whole_fold_alike(client: Elasticsearch, index: str) -> None:
    # Plain and fullwidth letters fold character by character; ß, ﬁ, İ, a combining accent and Σ
    # need the whole token normalized. The pairs were read from the plugin before either path existed.
    text = "Export ＣＯＮＴＲＯＬＳ on Straße, ﬁne İstanbul cafe\u0301 café ΣΊΣΥΦΟΣ Ⅻ 兩用物項 and 輸出規制 of K-9"
    found = client.indices.analyze(index=index, analyzer="index_side", text=text)["tokens"]
    assert [(t["token"], t["start_offset"], t["end_offset"]) for t in found] == [
        ("export", 0, 6),
        ("controls", 7, 15),
        ("on", 16, 18),
        ("strasse", 19, 25),
        ("fine", 27, 30),
        ("i\u0307stanbul", 31, 39),
        ("café", 40, 45),
        ("café", 46, 50),
        ("σίσυφοσ", 51, 58),
        ("xii", 59, 60),
        ("两用", 61, 63),
        ("用物", 62, 64),
        ("物项", 63, 65),
        ("and", 66, 69),
        ("输出", 70, 72),
        ("出规", 71, 73),
        ("规制", 72, 74),
        ("of", 75, 77),
        ("k", 78, 79),
        ("9", 80, 81),
    ]


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
    shutil.copytree(ANALYSIS_PLUGIN.sources, sources, ignore=shutil.ignore_patterns("target"))
    plugin = Plugin(ANALYSIS_PLUGIN.name, sources)
    before = source_digest(sources)
    cached = tmp_path / "cache" / f"{ANALYSIS_PLUGIN.name}-{before[:16]}.zip"
    cached.parent.mkdir()
    cached.write_bytes(b"built earlier")
    monkeypatch.setenv("PATH", str(tmp_path / "no-maven-here"))
    assert build_zip(cached.parent, plugin) == cached  # no Maven needed: the cached zip is used

    fold = next(sources.rglob("Fold.java"))
    fold.write_text(fold.read_text(encoding="utf-8") + "\n// changed\n", encoding="utf-8")
    assert source_digest(sources) != before
    with pytest.raises(PluginError, match="mvn not found"):
        build_zip(cached.parent, plugin)


# The analysis of the `.security` index's email field (Elasticsearch's SecuritySystemIndices).
SECURITY_EMAIL_ANALYSIS = {
    "filter": {
        "email": {
            "type": "pattern_capture",
            "preserve_original": True,
            "patterns": ["([^@]+)", "(\\p{L}+)", "(\\d+)", "@(.+)"],
        }
    },
    "analyzer": {"email": {"tokenizer": "uax_url_email", "filter": ["email", "lowercase", "unique"]}},
}


def test_the_security_index_analysis_gives_the_documented_tokens(client: Elasticsearch) -> None:
    """Elasticsearch's pattern_capture documentation: this address and its parts, once each."""
    name = f"security-analysis-{uuid.uuid4().hex[:8]}"
    client.indices.create(index=name, settings={"analysis": SECURITY_EMAIL_ANALYSIS})
    text = "John-Smith_123@Foo-Bar.com wrote to john-smith_123@foo-bar.com"
    found = [t for t, _, _ in tokens(client, name, "email", text)]
    assert found == [
        "john-smith_123@foo-bar.com",
        "john-smith_123",
        "john",
        "smith",
        "123",
        "foo-bar.com",
        "foo",
        "bar",
        "com",
        "wrote",
        "to",
    ]


def test_pattern_capture_without_patterns_is_refused(client: Elasticsearch) -> None:
    analysis = {
        "filter": {"bare": {"type": "pattern_capture"}},
        "analyzer": {"a": {"tokenizer": "uax_url_email", "filter": ["bare"]}},
    }
    with pytest.raises(BadRequestError, match=r"pattern_capture needs at least one entry in \[patterns\]"):
        client.indices.create(index=f"security-analysis-{uuid.uuid4().hex[:8]}", settings={"analysis": analysis})
