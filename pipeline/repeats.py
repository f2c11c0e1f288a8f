"""Repeats: pending articles that tell a story a rule already mailed (another outlet, language, day).

A repeat is not a new item: it goes out once, as new coverage of the story, under the date the
story was first mailed; another copy of an article the recipients already had (a Google News
item, then the publisher's own page: pipeline.outletcopies) is new coverage of nothing. The
earlier articles compared are found through the index from the pending ones (the same story
id, or the most similar text), so the cost follows the new articles, not the alerts sent."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from elasticsearch import Elasticsearch

from pipeline.delivery import Article, Ledger, PairState
from pipeline.es import Indices
from pipeline.outletcopies import headline_key
from pipeline.text import normalise

NEAR_DUPLICATE = 0.6  # Jaccard similarity of body shingles above which two articles are one story
SHINGLE = 5
RELATED_LIMIT = 500
SIMILAR_PER_ARTICLE = 10  # articles fetched as possible near-duplicates of each pending one


def shingles(text: str) -> set[int]:
    norm = re.sub(r"\s+", "", normalise(text))
    return {hash(norm[i : i + SHINGLE]) for i in range(max(1, len(norm) - SHINGLE + 1))}


def body_shingles(doc: dict[str, Any]) -> set[int]:
    return shingles(doc.get("body") or doc.get("title") or "")


def near_duplicates(a: set[int], b: set[int]) -> bool:
    return len(a & b) / max(1, len(a | b)) >= NEAR_DUPLICATE


def story_id(doc: dict[str, Any]) -> str | None:
    return (doc.get("story") or {}).get("id")


def copy_key(doc: dict[str, Any]) -> tuple[str, str]:
    """The same outlet domain and headline: two copies of one article (pipeline.outletcopies)."""
    return (doc.get("source") or {}).get("domain") or "", headline_key(doc) or str(doc.get("url"))


@dataclass(frozen=True)
class SentStory:
    """A story the rule already mailed: the article its recipients saw first, when, and the copy
    keys of every report of it mailed so far."""

    doc_id: str
    doc: dict[str, Any]
    sent_at: datetime
    copies: frozenset[tuple[str, str]]

    def mailed(self, doc: dict[str, Any]) -> bool:
        """A copy of a report the recipients already had."""
        return copy_key(doc) in self.copies


def split_repeats(
    es: Elasticsearch, indices: Indices, ledger: Ledger, rule: str, pending: list[Article], young: datetime
) -> dict[str, SentStory]:
    """The story already sent that each repeat among the pending articles tells, by article id.

    Args:
        rule: the alert rule whose sent pairs count.
        young: the oldest publication date the rule still alerts (earlier articles are not compared).
    """
    if not pending:
        return {}
    sent_at = {
        i: pair.sent_at
        for i, pair in ledger.lookup(rule, _related(es, indices, pending, young)).items()
        if pair.state is PairState.SENT and pair.sent_at is not None
    }
    if not sent_at:
        return {}
    found = [d for d in es.mget(index=indices.articles, ids=list(sent_at))["docs"] if d.get("found")]
    # A story is dated by its first mail: later ones were new coverage of it.
    key_of = {d["_id"]: story_id(d["_source"]) or d["_id"] for d in found}
    copies: dict[str, set[tuple[str, str]]] = {}
    for d in found:
        copies.setdefault(key_of[d["_id"]], set()).add(copy_key(d["_source"]))
    first: dict[str, SentStory] = {}
    for d in sorted(found, key=lambda d: (sent_at[d["_id"]], d["_id"])):
        key = key_of[d["_id"]]
        first.setdefault(key, SentStory(d["_id"], d["_source"], sent_at[d["_id"]], frozenset(copies[key])))
    earlier = [(key_of[d["_id"]], body_shingles(d["_source"])) for d in found]
    repeats = {}
    for doc_id, doc in pending:
        # Another language's report of a story already sent is a repeat too.
        key = story_id(doc)
        if key not in first:
            marks = body_shingles(doc)
            key = next((k for k, e in earlier if near_duplicates(marks, e)), None)
        if key is not None:
            repeats[doc_id] = first[key]
    return repeats


def _related(es: Elasticsearch, indices: Indices, pending: list[Article], young: datetime) -> list[str]:
    """Ids of young articles in the pending ones' stories or most like their text."""
    ids = [doc_id for doc_id, _ in pending]
    stories = sorted({s for _, doc in pending if (s := story_id(doc))})
    like = [{"_index": indices.articles, "_id": doc_id} for doc_id in ids]
    should: list[dict[str, Any]] = [
        {"more_like_this": {"fields": ["body"], "like": like, "min_term_freq": 1, "max_query_terms": 50}}
    ]
    if stories:
        should.append({"terms": {"story.id": stories}})
    hits = es.search(
        index=indices.articles,
        size=min(RELATED_LIMIT, SIMILAR_PER_ARTICLE * len(ids) + len(stories)),
        source=False,
        query={
            "bool": {
                "filter": [{"range": {"published_at": {"gte": young.isoformat()}}}],
                "should": should,
                "minimum_should_match": 1,
                "must_not": [{"ids": {"values": ids}}],
            }
        },
    )["hits"]["hits"]
    return [h["_id"] for h in hits]
