"""Search the article index the way analysts do: normalised like the documents."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch

from pipeline.es import Indices
from pipeline.tag import Tagger

_EM = re.compile(r"<em>(.*?)</em>")
_TAG = re.compile(r"</?em>")


@dataclass(frozen=True)
class Hit:
    id: str
    title: str
    url: str
    source: dict[str, Any]
    published_at: str | None
    score: float
    matched: list[str]
    snippets: list[str]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "url": self.url,
            "source": self.source,
            "published_at": self.published_at,
            "score": self.score,
            "matched": self.matched,
        }


def build_query(tagger: Tagger, text: str) -> dict[str, Any]:
    """Word search over the segmented simplified fields; an entity id also matches its tag."""
    words = tagger.segmenter.segmented(text)
    should: list[dict[str, Any]] = [
        {"match_phrase": {"body_words": {"query": words}}},
        {"match_phrase": {"title_words": {"query": words, "boost": 2}}},
    ]
    if text.strip() in tagger.watchlist.by_id():
        should.append({"term": {"entity_ids": {"value": text.strip(), "boost": 3}}})
    return {"bool": {"should": should, "minimum_should_match": 1}}


def search(es: Elasticsearch, indices: Indices, tagger: Tagger, text: str, limit: int = 10) -> list[Hit]:
    response = es.search(
        index=indices.articles,
        query=build_query(tagger, text),
        size=limit,
        source_includes=["title", "url", "source", "published_at"],
        highlight={
            "fields": {"body_words": {"fragment_size": 80, "number_of_fragments": 2}, "title_words": {}},
        },
    )
    hits = []
    for hit in response["hits"]["hits"]:
        src = hit["_source"]
        fragments = [f for field in ("title_words", "body_words") for f in hit.get("highlight", {}).get(field, [])]
        hits.append(
            Hit(
                id=hit["_id"],
                title=src.get("title") or "",
                url=src.get("url") or "",
                source={k: v for k, v in (src.get("source") or {}).items() if k in {"name", "kind", "domain"}},
                published_at=src.get("published_at"),
                score=float(hit["_score"] or 0.0),
                matched=sorted({m.replace(" ", "") for f in fragments for m in _EM.findall(f)}),
                snippets=[unsegment(f) for f in fragments],
            )
        )
    return hits


def unsegment(fragment: str) -> str:
    """Drop the spaces jieba put between CJK words, keep them between Latin words."""
    tokens = fragment.split(" ")
    out = tokens[0] if tokens else ""
    for token in tokens[1:]:
        left, right = _TAG.sub("", out)[-1:], _TAG.sub("", token)[:1]
        out += ("" if not (left.isascii() and right.isascii()) else " ") + token
    return out
