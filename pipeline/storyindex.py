"""Stories in the index: each article's `story` is set when it is indexed, and kept current.

`assign` runs before a batch is written: an article already in the index keeps its story (a
re-run changes nothing); a new one gets the story pipeline.stories chooses among the
candidates found by its entity ids and the window around its date (one query per batch,
never a scan), or among the articles of its own batch. The lead of each touched story gets
its `story.size` and `story.languages` (members count in an aggregation, nothing is read
back), so a late joiner shows on the lead; members carry the story's id, start and their own
language. Two runs indexing two reports of one
event at the same instant can each start a story; pipeline.storymerge merges them when the runs end.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
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


@dataclass(frozen=True)
class _Member:
    published: datetime
    fingerprint: Fingerprint
    language: str


@dataclass
class RunStories:
    """The articles one run has given a story so far, by story id, so the run's next batches find
    them without an index refresh. The index answers for everything older; its answers leave out
    these articles (a refresh may or may not have shown them yet), so nothing is counted twice.
    """

    members: dict[str, dict[str, _Member]] = field(default_factory=lambda: defaultdict(dict))
    first_seen: dict[str, datetime] = field(default_factory=dict)

    def article_ids(self) -> list[str]:
        return [i for ids in self.members.values() for i in ids]

    def add(self, story_id: str, first_seen: datetime, article_id: str, member: _Member) -> None:
        self.first_seen.setdefault(story_id, first_seen)
        self.members[story_id][article_id] = member

    def frequencies(self, first: datetime, last: datetime) -> EntityWeights:
        return EntityWeights.of(
            m.fingerprint for ms in self.members.values() for m in ms.values() if first <= m.published <= last
        )


def assign(
    es: Elasticsearch, indices: Indices, docs: list[Document], run: RunStories | None = None
) -> list[dict[str, Any]]:
    """Set `story` on every document of the batch; returns the updates its leads in the index need.

    `run` carries the stories of the run's earlier batches (without it, the batch is a run of its own).
    """
    if not docs:
        return []
    run = run if run is not None else RunStories()
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
            member = _Member(_published(doc), _fingerprint(doc), doc["story"]["language"])
            run.add(story["id"], datetime.fromisoformat(story["first_seen"]), doc_id, member)
        elif doc.get("published_at"):  # every pipeline document has one; a bare test document may not
            new.append(NewArticle(doc_id, _published(doc), _fingerprint(doc)))
    if new:
        candidates, weights = _candidates(es, indices, new, run)
        assigned = assign_batch(new, candidates, weights)
        by_id = {a.id: a for a in new}
        for doc_id, doc in docs:
            if doc_id in assigned:
                doc["story"] = _story_field(doc_id, assigned[doc_id], doc)
                article = by_id[doc_id]
                member = _Member(article.published, article.fingerprint, doc["story"]["language"])
                run.add(assigned[doc_id].story_id, assigned[doc_id].first_seen, doc_id, member)
    return _lead_updates(es, indices, docs, run)


def _published(doc: dict[str, Any]) -> datetime:
    published = datetime.fromisoformat(doc["published_at"])
    return published if published.tzinfo else published.replace(tzinfo=UTC)  # a bare date, as Elasticsearch reads it


def _fingerprint(doc: dict[str, Any]) -> Fingerprint:
    return Fingerprint.of_terms(doc.get("story_fingerprint") or [])


def _lead_updates(es: Elasticsearch, indices: Indices, docs: list[Document], run: RunStories) -> list[dict[str, Any]]:
    """Size and languages of every story the batch touches, set on its lead: in the batch, or an update.

    The index counts the members of earlier runs, the run its own.
    """
    touched = sorted({doc["story"]["id"] for _, doc in docs if "story" in doc})
    if not touched:
        return []
    size: dict[str, int] = defaultdict(int)
    languages: dict[str, set[str]] = defaultdict(set)
    # A story this run started has no members from earlier runs: only the others are asked for.
    older = [s for s in touched if s not in run.members.get(s, {})]
    if older:
        response = es.search(
            index=indices.articles,
            size=0,
            query={
                "bool": {
                    "filter": [{"terms": {"story.id": older}}],
                    "must_not": [{"ids": {"values": run.article_ids()}}],
                }
            },
            aggs={
                "stories": {
                    "terms": {"field": "story.id", "size": len(older)},
                    "aggs": {"languages": {"terms": {"field": "story.language", "size": 50}}},
                }
            },
        )
        for bucket in response["aggregations"]["stories"]["buckets"]:
            size[bucket["key"]] = bucket["doc_count"]
            languages[bucket["key"]] |= {b["key"] for b in bucket["languages"]["buckets"]}
    for story_id in touched:
        own = run.members.get(story_id, {})
        size[story_id] += len(own)
        languages[story_id] |= {m.language for m in own.values() if m.language}
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
    """The story each of these articles already has in the index (a real-time get: refreshed or not)."""
    docs = es.mget(index=indices.articles, ids=ids, source_includes=["story"])["docs"]
    return {d["_id"]: d["_source"]["story"] for d in docs if d.get("found") and d["_source"].get("story")}


def _candidates(
    es: Elasticsearch, indices: Indices, new: list[NewArticle], run: RunStories
) -> tuple[list[Story], EntityWeights]:
    """Stories that started within the window of the batch's articles and share an entity with one of
    them, and the entities' frequencies among the articles of the weeks around the batch (and in it).

    The run's own members come from `run`, the others from the index; pipeline.stories applies
    each article's own window.
    """
    first, last = min(a.published for a in new), max(a.published for a in new)
    entities = {e for a in new for e in a.fingerprint.entities}
    own = {"ids": {"values": run.article_ids()}}
    members, stored = stored_members(es, indices, first, last, entities, own, own)
    since, until = weight_span(first, last)
    weights = stored.plus(run.frequencies(since, until)).plus(EntityWeights.of(a.fingerprint for a in new))
    stories = stories_of(members, weights)
    for story_id, ours in run.members.items():
        if not first - WINDOW < run.first_seen[story_id] < last + WINDOW:
            continue
        if story_id not in stories:
            stories[story_id] = Story(story_id, run.first_seen[story_id])
        for member in ours.values():
            stories[story_id].add(vector(member.fingerprint, weights), member.fingerprint.news_date)
    return list(stories.values()), weights


@dataclass(frozen=True)
class StoredMember:
    """A member of a story, as a candidate search reads it from doc values."""

    story_id: str
    first_seen: datetime
    fingerprint: Fingerprint


def weight_span(first: datetime, last: datetime) -> tuple[datetime, datetime]:
    """The publication dates over which entity frequencies are counted for articles of [first, last]."""
    return first - timedelta(days=WEIGHT_DAYS), last + timedelta(days=1)


def stored_members(
    es: Elasticsearch,
    indices: Indices,
    first: datetime,
    last: datetime,
    entities: Iterable[str],
    leave_out: dict[str, Any],
    uncounted: dict[str, Any] | None = None,
) -> tuple[list[StoredMember], EntityWeights]:
    """Members of the stories that started within the window of [first, last] and name one of the
    entities (less the `leave_out` query), and the entities' frequencies over weight_span (less
    `uncounted`).

    One search, on entity ids and the window only: its hits are scored by Lucene's own weighting
    of the shared entity ids, so the closest members come first.
    """
    entities = sorted(set(entities))
    since, until = weight_span(first, last)
    counted: dict[str, Any] = {"range": {"published_at": {"gte": since.isoformat(), "lte": until.isoformat()}}}
    if uncounted is not None:
        counted = {"bool": {"filter": [counted], "must_not": [uncounted]}}
    window = {"gt": (first - WINDOW).isoformat(), "lt": (last + WINDOW).isoformat()}
    response = es.search(
        index=indices.articles,
        size=CANDIDATES if entities else 0,
        source=False,
        docvalue_fields=[{"field": f} for f in ("story.id", "story.first_seen", "story_fingerprint")],
        query={
            "bool": {
                "filter": [{"range": {"story.first_seen": window}}],
                "must_not": [leave_out],
                "should": [{"term": {"entity_ids": e}} for e in entities] or [{"match_none": {}}],
                "minimum_should_match": 1,
            }
        },
        aggs={
            "recent": {
                "global": {},
                "aggs": {
                    "window": {
                        "filter": counted,
                        "aggs": {"frequency": {"terms": {"field": "entity_ids", "size": 2000}}},
                    }
                },
            }
        },
    )
    frequency = response["aggregations"]["recent"]["window"]
    weights = EntityWeights(
        {b["key"]: b["doc_count"] for b in frequency["frequency"]["buckets"]}, frequency["doc_count"]
    )
    members = [
        StoredMember(
            hit["fields"]["story.id"][0],
            datetime.fromisoformat(hit["fields"]["story.first_seen"][0]),
            Fingerprint.of_terms(hit["fields"].get("story_fingerprint", [])),
        )
        for hit in response["hits"]["hits"]
    ]
    return members, weights


def stories_of(members: Iterable[StoredMember], weights: EntityWeights) -> dict[str, Story]:
    """The stories of these members, by id, each with its members summed as pipeline.stories weighs them."""
    stories: dict[str, Story] = {}
    for member in members:
        if member.story_id not in stories:
            stories[member.story_id] = Story(member.story_id, member.first_seen)
        stories[member.story_id].add(vector(member.fingerprint, weights), member.fingerprint.news_date)
    return stories


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
