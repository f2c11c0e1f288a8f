"""Stories in the index: each article's `story` is set when it is indexed, and kept current.

`assign` runs before a batch is written: an article already in the index keeps its story (a
re-run changes nothing); a new one gets the story pipeline.stories chooses among the
candidates found by its entity ids and the window around its date (one query per batch,
never a scan), or among the articles of its own batch. The lead of each touched story gets
its `story.size` and `story.languages` (members count in an aggregation, nothing is read
back), so a late joiner shows on the lead; members carry the story's id, start and their own
language. Two runs indexing two reports of one
event at the same instant can each start a story; the next article joins one of them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from elasticsearch import Elasticsearch, helpers

from pipeline.document import language_tag
from pipeline.es import Indices
from pipeline.outletcopies import shared_stories
from pipeline.stories import (
    WINDOW,
    Assignment,
    EntityWeights,
    Fingerprint,
    NewArticle,
    Story,
    assign_batch,
    vector,
)

CANDIDATES = 500  # closest articles fetched per batch
WEIGHT_DAYS = 30  # entity frequencies are counted over the articles of this many days around the batch

Document = tuple[str, dict[str, Any]]


def assign(es: Elasticsearch, indices: Indices, docs: list[Document]) -> list[dict[str, Any]]:
    """Set `story` on every document of the batch; returns the updates its leads in the index need."""
    if not docs:
        return []
    known = _stored_stories(es, indices, [doc_id for doc_id, _ in docs])
    # A Google News item and the publisher's own copy: the second joins the first's story.
    shared = shared_stories(es, indices, [(i, d) for i, d in docs if i not in known])
    new = []
    for doc_id, doc in docs:
        if doc_id in known:
            doc["story"] = known[doc_id]
        elif doc_id in shared:
            story = shared[doc_id]
            doc["story"] = {"id": story["id"], "lead": False, "first_seen": story["first_seen"]}
            doc["story"]["language"] = language_tag(doc)
        elif doc.get("published_at"):  # every pipeline document has one; a bare test document may not
            published = datetime.fromisoformat(doc["published_at"])
            if published.tzinfo is None:  # a bare date, as Elasticsearch reads it: UTC
                published = published.replace(tzinfo=UTC)
            new.append(NewArticle(doc_id, published, Fingerprint.of_terms(doc.get("story_fingerprint") or [])))
    if new:
        candidates, weights = _candidates(es, indices, new)
        assigned = assign_batch(new, candidates, weights)
        for doc_id, doc in docs:
            if doc_id in assigned:
                doc["story"] = _story_field(doc_id, assigned[doc_id], doc)
    return _lead_updates(es, indices, docs, {a.id for a in new} | set(shared))


def _lead_updates(es: Elasticsearch, indices: Indices, docs: list[Document], new_ids: set[str]) -> list[dict[str, Any]]:
    """Size and languages of every story the batch touches, set on its lead: in the batch, or an update."""
    touched = sorted({doc["story"]["id"] for _, doc in docs if "story" in doc})
    if not touched:
        return []
    response = es.search(
        index=indices.articles,
        size=0,
        query={"terms": {"story.id": touched}},
        aggs={
            "stories": {
                "terms": {"field": "story.id", "size": len(touched)},
                "aggs": {"languages": {"terms": {"field": "story.language", "size": 50}}},
            }
        },
    )
    size: dict[str, int] = {}
    languages: dict[str, set[str]] = defaultdict(set)
    for bucket in response["aggregations"]["stories"]["buckets"]:
        size[bucket["key"]] = bucket["doc_count"]
        languages[bucket["key"]] |= {b["key"] for b in bucket["languages"]["buckets"]}
    for doc_id, doc in docs:
        if doc_id in new_ids:
            size[doc["story"]["id"]] = size.get(doc["story"]["id"], 0) + 1
        if doc.get("story", {}).get("language"):
            languages[doc["story"]["id"]].add(doc["story"]["language"])
    in_batch = dict(docs)
    updates = []
    for story_id in touched:
        counts = {"size": size[story_id], "languages": sorted(languages[story_id])}
        if story_id in in_batch:
            in_batch[story_id]["story"].update(counts)
        else:
            lead = {"_op_type": "update", "_index": indices.articles, "_id": story_id}
            updates.append(lead | {"doc": {"story": counts}})
    return updates


def update_leads(es: Elasticsearch, updates: list[dict[str, Any]]) -> int:
    """Write the leads' new sizes; returns how many were written.

    A lead that a migration is moving right now misses its update; the story's next article sets it.
    """
    return sum(ok for ok, _ in helpers.streaming_bulk(es, updates, max_retries=3, raise_on_error=False))


def _story_field(doc_id: str, assignment: Assignment, doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": assignment.story_id,
        "lead": assignment.leads(doc_id),
        "first_seen": assignment.first_seen.isoformat(),
        "language": language_tag(doc),
    }


def _stored_stories(es: Elasticsearch, indices: Indices, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The story each of these articles already has in the index."""
    docs = es.mget(index=indices.articles, ids=ids, source_includes=["story"])["docs"]
    return {d["_id"]: d["_source"]["story"] for d in docs if d.get("found") and d["_source"].get("story")}


def _candidates(es: Elasticsearch, indices: Indices, new: list[NewArticle]) -> tuple[list[Story], EntityWeights]:
    """Stories that started within the window of the batch's articles and share an entity with one of
    them, and the entities' frequencies among the articles of the weeks around the batch (and in it).

    One search for the batch: its hits are scored by Lucene's own weighting of the shared entity
    ids, so the closest members come first; pipeline.stories applies each article's own window.
    """
    first, last = min(a.published for a in new), max(a.published for a in new)
    entities = sorted({e for a in new for e in a.fingerprint.entities})
    recent = {"gte": (first - timedelta(days=WEIGHT_DAYS)).isoformat(), "lte": (last + timedelta(days=1)).isoformat()}
    response = es.search(
        index=indices.articles,
        size=CANDIDATES if entities else 0,
        source=False,
        docvalue_fields=[{"field": f} for f in ("story.id", "story.first_seen", "story_fingerprint")],
        query={
            "bool": {
                "filter": [
                    {
                        "range": {
                            "story.first_seen": {"gt": (first - WINDOW).isoformat(), "lt": (last + WINDOW).isoformat()}
                        }
                    }
                ],
                "should": [{"term": {"entity_ids": e}} for e in entities] or [{"match_none": {}}],
                "minimum_should_match": 1,
            }
        },
        aggs={
            "recent": {
                "global": {},
                "aggs": {
                    "window": {
                        "filter": {"range": {"published_at": recent}},
                        "aggs": {"frequency": {"terms": {"field": "entity_ids", "size": 2000}}},
                    }
                },
            }
        },
    )
    window = response["aggregations"]["recent"]["window"]
    stored = EntityWeights({b["key"]: b["doc_count"] for b in window["frequency"]["buckets"]}, window["doc_count"])
    weights = stored.plus(EntityWeights.of(a.fingerprint for a in new))
    stories: dict[str, Story] = {}
    for hit in response["hits"]["hits"]:
        values = hit["fields"]
        story_id = values["story.id"][0]
        if story_id not in stories:
            stories[story_id] = Story(story_id, datetime.fromisoformat(values["story.first_seen"][0]))
        stories[story_id].add(vector(Fingerprint.of_terms(values.get("story_fingerprint", [])), weights))
    return list(stories.values()), weights


@dataclass(frozen=True)
class StoryRow:
    """One story as `newsmon stories` lists it: its lead article, start, size and languages."""

    id: str
    title: str
    outlet: str
    url: str
    first_seen: str
    size: int
    languages: list[str]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def list_stories(es: Elasticsearch, indices: Indices, since: timedelta, now: datetime, limit: int) -> list[StoryRow]:
    """Stories that started since `now - since`, largest first (their leads carry the counts)."""
    hits = es.search(
        index=indices.articles,
        size=limit,
        source_includes=["title", "url", "source.name", "story", "language", "script"],
        query={
            "bool": {
                "filter": [
                    {"term": {"story.lead": True}},
                    {"range": {"story.first_seen": {"gte": (now - since).isoformat()}}},
                ]
            }
        },
        sort=[{"story.size": {"order": "desc", "unmapped_type": "integer"}}, {"story.first_seen": "desc"}],
    )["hits"]["hits"]
    rows = []
    for hit in hits:
        doc = hit["_source"]
        story = doc["story"]
        rows.append(
            StoryRow(
                id=story["id"],
                title=doc.get("title") or "",
                outlet=(doc.get("source") or {}).get("name") or "",
                url=doc.get("url") or "",
                first_seen=story["first_seen"],
                size=int(story.get("size", 1)),
                languages=list(story.get("languages") or [language_tag(doc)]),
            )
        )
    return rows
