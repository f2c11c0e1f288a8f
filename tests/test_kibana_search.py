"""Searching as an analyst does in Kibana: its own query bodies, sent to the real node.

The bodies are what Kibana 8.19 builds (kbn-es-query): KQL free text becomes a
`multi_match` (type `best_fields`, or `phrase` when quoted) with `lenient: true` and no
fields, so it runs on `index.query.default_field`; Lucene syntax becomes a `query_string`
with `analyze_wildcard: true`. Both sit in the bool query Discover sends beside its time range.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from pipeline.config import PROJECT_ROOT, Settings
from pipeline.es import Indices, connect, open_store
from pipeline.index import bulk_index
from pipeline.seeds import load_seeds, read_seeds
from pipeline.setup import setup_indices
from pipeline.tag import get_tagger
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


class Corpus(dict[str, str]):
    """Id -> title and body of every indexed article, with the index holding them."""

    def __init__(self, es: Elasticsearch, indices: Indices) -> None:
        super().__init__()
        self.es, self.indices = es, indices


@pytest.fixture(scope="module")
def corpus(es_node: str, cache_dir: Path) -> Corpus:
    """Seeds and the real corpus, indexed once for the module."""
    settings = Settings(es_url=es_node, index_prefix=f"kib{uuid.uuid4().hex[:8]}", cache_dir=cache_dir)
    setup_indices(connect(settings), settings)
    es, indices = open_store(settings)
    # The seeds fully tagged, as the pipeline indexes them; the corpus as title and body.
    load_seeds(es, indices, get_tagger(settings))
    texts = Corpus(es, indices)
    docs = []
    for seed in read_seeds():
        texts[seed.id] = f"{seed.title}\n{seed.body}"
    for article in load_articles():
        texts[article.id] = article.text
        docs.append(
            (article.id, {"title": article.title, "body": article.body, "published_at": article.published.isoformat()})
        )
    assert bulk_index(es, indices, docs).indexed == len(docs)
    return texts


def hits(corpus: Corpus, body: dict[str, Any]) -> set[str]:
    found = corpus.es.search(index=corpus.indices.articles, query=body, size=len(corpus), source=False)["hits"]["hits"]
    return {h["_id"] for h in found}


def containing(corpus: Corpus, word: str) -> set[str]:
    """Articles whose text holds `word` once both are in one script and case."""
    return {i for i, text in corpus.items() if normalise(word) in normalise(text)}


@pytest.mark.parametrize("query", ["两用物项", "兩用物項", '"两用物项"', '"兩用物項"'])
@pytest.mark.parametrize("syntax", [kql, lucene])
def test_dual_use_items_in_either_script_quoted_or_not_find_the_same_articles(
    corpus: Corpus, syntax: Any, query: str
) -> None:
    expected = containing(corpus, "两用物项")
    traditional = {i for i in expected if "兩用物項" in corpus[i]}
    assert traditional and expected - traditional  # both scripts are really in the corpus
    assert hits(corpus, syntax(query)) == expected


def test_unquoted_word_does_not_match_its_single_characters(corpus: Corpus) -> None:
    only_chars = (containing(corpus, "用") & containing(corpus, "物")) - containing(corpus, "两用物项")
    assert len(only_chars) > 20
    assert not hits(corpus, kql("兩用物項")) & only_chars


# 輸出規制 is written alike in Traditional Chinese; 両 (shinjitai) is Japanese only, unlike 兩 and 两.
@pytest.mark.parametrize("query", ["輸出規制", '"輸出規制"', "軍民両用", '"軍民両用"'])
def test_japanese_export_control_finds_the_japanese_articles(corpus: Corpus, query: str) -> None:
    expected = containing(corpus, query.strip('"'))
    assert {i for i in expected if i.startswith("ja-")}
    assert hits(corpus, kql(query)) == expected


def test_english_phrase_is_case_insensitive(corpus: Corpus) -> None:
    phrase = re.compile(r"\bexport\W+controls\b", re.IGNORECASE)
    found = hits(corpus, kql('"Export Controls"'))
    assert found == hits(corpus, kql('"EXPORT CONTROLS"'))
    assert {i for i, text in corpus.items() if "export controls" in text.lower()} <= found
    assert all(phrase.search(corpus[i]) for i in found)


def test_traditional_query_finds_simplified_articles(corpus: Corpus) -> None:
    found = hits(corpus, kql("軍民兩用"))
    assert found == containing(corpus, "軍民兩用")
    assert any("军民两用" in corpus[i] for i in found)


def test_entity_panels_can_show_labels(corpus: Corpus) -> None:
    es, indices = corpus.es, corpus.indices
    aggs = es.search(index=indices.articles, size=0, aggs={"labels": {"terms": {"field": "entity_labels", "size": 50}}})
    labels = {b["key"] for b in aggs["aggregations"]["labels"]["buckets"]}
    assert "高市早苗 (Takaichi Sanae)" in labels
    assert "takaichi_sanae" not in labels


def test_mention_counts_stay_paired_with_their_entity(corpus: Corpus) -> None:
    es, indices = corpus.es, corpus.indices
    seeds = es.search(index=indices.articles, query={"term": {"source.kind": "seed"}}, size=10)["hits"]["hits"]
    counts = {h["_id"]: {m["id"]: m["count"] for m in h["_source"]["entity_mentions"]} for h in seeds}
    most = max(n for c in counts.values() for n in c.values())
    top_id = next(i for c in counts.values() for i, n in c.items() if n == most)
    # Only documents where this entity itself was mentioned that often, not some other one.
    paired = {
        "nested": {
            "path": "entity_mentions",
            "query": {
                "bool": {
                    "filter": [
                        {"term": {"entity_mentions.id": top_id}},
                        {"range": {"entity_mentions.count": {"gte": most}}},
                    ]
                }
            },
        }
    }
    expected = {d for d, c in counts.items() if c.get(top_id, 0) >= most}
    assert hits(corpus, paired) == expected
    other = next(i for c in counts.values() for i, n in c.items() if n < most and i != top_id)
    paired["nested"]["query"]["bool"]["filter"][0]["term"]["entity_mentions.id"] = other  # type: ignore[index]
    assert hits(corpus, paired) == {d for d, c in counts.items() if c.get(other, 0) >= most}


def test_url_fields_are_links_in_the_data_views() -> None:
    objects = [
        json.loads(line) for line in (PROJECT_ROOT / "docker/kibana/saved_objects.ndjson").read_text().splitlines()
    ]
    views = {o["id"]: o["attributes"] for o in objects if o["type"] == "index-pattern"}
    for view, fields in {
        "newsmon-articles": ["url", "final_url"],
        "newsmon-feeds": ["url"],
        "newsmon-entries": ["url", "link"],
    }.items():
        formats = json.loads(views[view]["fieldFormatMap"])
        template = json.loads((PROJECT_ROOT / f"config/templates/{view.split('-')[1]}.json").read_text())
        for name in fields:
            assert formats[name]["id"] == "url", (view, name)
            assert name in template["template"]["mappings"]["properties"], (view, name)


def test_discover_highlights_the_word_as_each_article_writes_it(corpus: Corpus) -> None:
    # Discover's highlight request: every field, whole values, its own tags.
    tag, end = "@kibana-highlighted-field@", "@/kibana-highlighted-field@"
    highlight = {"pre_tags": [tag], "post_tags": [end], "fields": {"*": {}}, "fragment_size": 2147483647}
    found = corpus.es.search(index=corpus.indices.articles, query=kql("兩用物項"), highlight=highlight, size=50)
    marked: set[str] = set()
    for hit in found["hits"]["hits"]:
        fragments = " ".join(f for frags in hit["highlight"].values() for f in frags)
        marked |= set(re.findall(f"{tag}(.*?){end}", fragments))
    assert {"两用物项", "兩用物項"} <= marked  # each as written (one article mixes the scripts)
    assert {normalise(m) for m in marked} == {"两用物项"}
