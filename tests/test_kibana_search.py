"""Searching as an analyst does in Kibana: its own query bodies, sent to the real node.

The bodies are what Kibana 8.19 builds (kbn-es-query): KQL free text becomes a
`multi_match` (type `best_fields`, or `phrase` when quoted) with `lenient: true` and no
fields, so it runs on `index.query.default_field`; Lucene syntax becomes a `query_string`
with `analyze_wildcard: true`. Both sit in the bool query Discover sends beside its time range.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from pipeline.config import Settings
from pipeline.es import Indices, open_store
from pipeline.index import bulk_index
from pipeline.seeds import read_seeds
from pipeline.text import normalise
from tests.corpus import load_articles

TIME_RANGE = {"range": {"published_at": {"gte": "2000-01-01T00:00:00.000Z", "lte": "2100-01-01T00:00:00.000Z"}}}


def kql(text: str) -> dict[str, Any]:
    """Discover's body for KQL free text; quotes in `text` make it a phrase, as in Kibana."""
    quoted = len(text) > 1 and text.startswith('"') and text.endswith('"')
    value = text[1:-1] if quoted else text
    match = {"multi_match": {"type": "phrase" if quoted else "best_fields", "query": value, "lenient": True}}
    return {"bool": {"must": [], "filter": [match, TIME_RANGE], "should": [], "must_not": []}}


def lucene(text: str) -> dict[str, Any]:
    """Discover's body for the same text in Lucene syntax."""
    query_string = {"query_string": {"query": text, "analyze_wildcard": True}}
    return {"bool": {"must": [query_string], "filter": [TIME_RANGE], "should": [], "must_not": []}}


@pytest.fixture(scope="module")
def corpus(es_node: str) -> dict[str, str]:
    """Seeds and the real corpus, indexed once for the module: id -> title and body."""
    settings = Settings(es_url=es_node, index_prefix=f"kib{uuid.uuid4().hex[:8]}")
    es, indices = open_store(settings)
    texts: dict[str, str] = {}
    docs = []
    for seed in read_seeds():
        texts[seed.id] = f"{seed.title}\n{seed.body}"
        docs.append((seed.id, {"title": seed.title, "body": seed.body, "published_at": seed.published_at.isoformat()}))
    for article in load_articles():
        texts[article.id] = article.text
        docs.append(
            (article.id, {"title": article.title, "body": article.body, "published_at": article.published.isoformat()})
        )
    assert bulk_index(es, indices, docs).indexed == len(docs)
    pytest.kibana = (es, indices)  # type: ignore[attr-defined]
    return texts


def hits(corpus: dict[str, str], body: dict[str, Any]) -> set[str]:
    es, indices = pytest.kibana  # type: ignore[attr-defined]
    assert isinstance(es, Elasticsearch) and isinstance(indices, Indices)
    found = es.search(index=indices.articles, query=body, size=len(corpus), source=False)["hits"]["hits"]
    return {h["_id"] for h in found}


def containing(corpus: dict[str, str], word: str) -> set[str]:
    """Articles whose text holds `word` once both are in one script and case."""
    return {i for i, text in corpus.items() if normalise(word) in normalise(text)}


@pytest.mark.parametrize("query", ["两用物项", "兩用物項", '"两用物项"', '"兩用物項"'])
@pytest.mark.parametrize("syntax", [kql, lucene])
def test_dual_use_items_in_either_script_quoted_or_not_find_the_same_articles(
    corpus: dict[str, str], syntax: Any, query: str
) -> None:
    expected = containing(corpus, "两用物项")
    traditional = {i for i in expected if "兩用物項" in corpus[i]}
    assert traditional and expected - traditional  # both scripts are really in the corpus
    assert hits(corpus, syntax(query)) == expected


def test_unquoted_word_does_not_match_its_single_characters(corpus: dict[str, str]) -> None:
    only_chars = (containing(corpus, "用") & containing(corpus, "物")) - containing(corpus, "两用物项")
    assert len(only_chars) > 20
    assert not hits(corpus, kql("兩用物項")) & only_chars


@pytest.mark.parametrize("query", ["輸出規制", '"輸出規制"'])
def test_japanese_export_control_finds_the_japanese_articles(corpus: dict[str, str], query: str) -> None:
    expected = containing(corpus, "輸出規制")
    assert {i for i in expected if i.startswith("ja-")}
    assert hits(corpus, kql(query)) == expected


def test_english_phrase_is_case_insensitive(corpus: dict[str, str]) -> None:
    phrase = re.compile(r"\bexport\W+controls\b", re.IGNORECASE)
    found = hits(corpus, kql('"Export Controls"'))
    assert found == hits(corpus, kql('"EXPORT CONTROLS"'))
    assert {i for i, text in corpus.items() if "export controls" in text.lower()} <= found
    assert all(phrase.search(corpus[i]) for i in found)


def test_traditional_query_finds_simplified_articles(corpus: dict[str, str]) -> None:
    found = hits(corpus, kql("軍民兩用"))
    assert found == containing(corpus, "軍民兩用")
    assert any("军民两用" in corpus[i] for i in found)
