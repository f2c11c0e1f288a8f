"""An aggregator's item and the publisher's own copy of it: one story.

A Google News item whose link never reached the publisher is indexed from the item, under
its outlet's domain (pipeline.googlenews). When the publisher's own page arrives under
another URL (from its feed, a sitemap or a listing), the two are one article: the same
outlet domain and the same headline (the aggregator's title less its " - Outlet" suffix,
compared after normalising). Whichever comes second joins the first one's story, so the
story counts the article once and a rule alerts it once (repeats go by story).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from elasticsearch import Elasticsearch

from pipeline.es import Indices
from pipeline.text import normalise

UNRESOLVED = "google_news_unresolved"
WINDOW = timedelta(days=3)  # how far apart the two copies' dates may be
CANDIDATES = 100
_SEPARATORS = re.compile(r"\s*[-|–—｜]\s*$")
_NOISE = re.compile(r"[\s\W_]+")

Document = tuple[str, dict[str, Any]]


def unresolved(doc: dict[str, Any]) -> bool:
    """An aggregator's item indexed from its own text (its link never reached the publisher)."""
    return str(doc.get("extraction_reason") or "").startswith(UNRESOLVED)


def headline(doc: dict[str, Any]) -> str:
    """The title without the outlet an aggregator appends (" - 日本经济新闻")."""
    title = str(doc.get("title") or doc.get("title_full") or "").strip()
    outlet = str(doc.get("source", {}).get("site_name") or "").strip()
    if outlet and title.endswith(outlet) and len(title) > len(outlet):
        title = _SEPARATORS.sub("", title[: -len(outlet)])
    return title


def headline_key(doc: dict[str, Any]) -> str:
    return _NOISE.sub("", normalise(headline(doc)))


def shared_stories(es: Elasticsearch, indices: Indices, docs: list[Document]) -> dict[str, dict[str, Any]]:
    """The stored story of the other copy of each new document that has one, by document id (one search)."""
    wanted = [
        (i, d) for i, d in docs if d.get("source", {}).get("domain") and headline_key(d) and d.get("published_at")
    ]
    if not wanted:
        return {}
    should = []
    for _, doc in wanted:
        published = datetime.fromisoformat(doc["published_at"])
        filters: list[dict[str, Any]] = [
            {"term": {"source.domain": doc["source"]["domain"]}},
            {
                "range": {
                    "published_at": {"gte": (published - WINDOW).isoformat(), "lte": (published + WINDOW).isoformat()}
                }
            },
            {"exists": {"field": "story.id"}},
        ]
        if not unresolved(doc):  # a publisher's page pairs only with an aggregator's item, not with its own pages
            filters.append({"prefix": {"extraction_reason": UNRESOLVED}})
        should.append({"bool": {"filter": filters, "must": [{"match_phrase": {"title": headline(doc)}}]}})
    hits = es.search(
        index=indices.articles,
        size=CANDIDATES,
        source_includes=["title", "title_full", "source", "extraction_reason", "story"],
        query={
            "bool": {
                "should": should,
                "minimum_should_match": 1,
                "must_not": [{"ids": {"values": [i for i, _ in docs]}}],
            }
        },
    )["hits"]["hits"]
    found = {}
    for doc_id, doc in wanted:
        for hit in hits:
            other = hit["_source"]
            if (
                other["source"].get("domain") == doc["source"]["domain"]
                and (unresolved(doc) or unresolved(other))
                and headline_key(other) == headline_key(doc)
            ):
                found[doc_id] = other["story"]
                break
    return found
