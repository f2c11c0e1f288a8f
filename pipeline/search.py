"""Search the article index the way analysts do in Kibana."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch

from pipeline.es import Indices
from pipeline.watchlist import Watchlist

_EM = re.compile(r"<em>(.*?)</em>")
# The fields analysed by newsmon_text (config/templates/articles.json), title first.
TEXT_FIELDS = ("title", "body", "summary")


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


def build_query(watchlist: Watchlist, text: str) -> dict[str, Any]:
    """The query Kibana sends for unquoted KQL free text, on the analysed fields.

    Elasticsearch's own analyzers fold the script and search CJK words as phrases of
    bigrams, so the CLI finds what an analyst finds; an entity id also matches its tag.
    """
    should: list[dict[str, Any]] = [
        {"multi_match": {"type": "best_fields", "query": text, "fields": ["title^2", *TEXT_FIELDS[1:]]}},
    ]
    if text.strip() in watchlist.by_id():
        should.append({"term": {"entity_ids": {"value": text.strip(), "boost": 3}}})
    return {"bool": {"should": should, "minimum_should_match": 1}}


def search(es: Elasticsearch, indices: Indices, watchlist: Watchlist, text: str, limit: int = 10) -> list[Hit]:
    response = es.search(
        index=indices.articles,
        query=build_query(watchlist, text),
        size=limit,
        source_includes=["title", "url", "source", "published_at"],
        highlight={"fields": {"title": {}, "body": {"fragment_size": 80, "number_of_fragments": 2}}},
    )
    hits = []
    for hit in response["hits"]["hits"]:
        src = hit["_source"]
        fragments = [f for field in ("title", "body") for f in hit.get("highlight", {}).get(field, [])]
        hits.append(
            Hit(
                id=hit["_id"],
                title=src.get("title") or "",
                url=src.get("url") or "",
                source={k: v for k, v in (src.get("source") or {}).items() if k in {"name", "kind", "domain"}},
                published_at=src.get("published_at"),
                score=float(hit["_score"] or 0.0),
                matched=sorted({m for f in fragments for m in _EM.findall(f)}),
                snippets=fragments,
            )
        )
    return hits
