"""Stories two runs started for one event at once, merged into one when the runs end.

A run sees other runs' articles only once they are refreshed, so two runs indexing two reports
of one event at the same instant can each start a story. After its final refresh, a run checks
each story it started against the stories others started within the window (one search by
entity ids and window, never a scan): its lead meets them under the rule of pipeline.stories
as it would arriving now. When one matches, the later story (by first_seen, then id) merges
into the earlier: both runs order the pair alike, so they agree, and merging again changes
nothing. Its members take the survivor's id and start, its lead stops leading, and the
survivor's lead gets its size and languages counted again."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from elasticsearch import Elasticsearch, helpers

from pipeline.es import CONFLICT_RETRIES, Indices
from pipeline.index import CONFLICT
from pipeline.stories import EntityWeights, NewArticle, Story, assign_batch
from pipeline.storyindex import RunStories, stored_members, stories_of


class StoryMergeError(Exception):
    """Elasticsearch refused to move a story's members; the two stories stay apart."""


MEMBERS = 10_000  # members of one merged story moved at most (a search's whole window)

@dataclass(frozen=True)
class Merge:
    """The story `merged` (its members) joins `into`."""

    merged: str
    into: str
    first_seen: datetime


def converge(es: Elasticsearch, indices: Indices, run: RunStories) -> list[Merge]:
    """Merge each story the run started into a matching story another run started meanwhile.

    Call it after the run's refresh, so the other runs' refreshed articles are seen.
    """
    started = {s: run.first_seen[s] for s, members in run.members.items() if s in members}
    if not started:
        return []
    others, weights = _others(es, indices, run, started)
    merges = []
    for story_id, first_seen in sorted(started.items(), key=lambda s: (s[1], s[0])):
        lead = run.members[story_id][story_id]
        # The rule, as the story's lead would meet it now, the others' stories in view.
        joined = assign_batch([NewArticle(story_id, lead.published, lead.fingerprint)], others, weights)[story_id]
        if not joined.leads(story_id):
            earlier, later = sorted([(first_seen, story_id), (joined.first_seen, joined.story_id)])
            merges.append(Merge(later[1], earlier[1], earlier[0]))
    _apply(es, indices, merges)
    return merges


def _others(
    es: Elasticsearch, indices: Indices, run: RunStories, started: dict[str, datetime]
) -> tuple[list[Story], EntityWeights]:
    """Stories not started by the run, within the window of those it started and sharing an entity
    with them, and the entities' frequencies around them (all refreshed: the index counts them all)."""
    entities = {e for s in started for m in run.members[s].values() for e in m.fingerprint.entities}
    leave_out = {"terms": {"story.id": sorted(started)}}
    members, weights = stored_members(es, indices, min(started.values()), max(started.values()), entities, leave_out)
    return list(stories_of(members, weights).values()), weights


def _apply(es: Elasticsearch, indices: Indices, merges: list[Merge]) -> None:
    """Move the merged stories' members, then count the survivors' members on their leads."""
    if not merges:
        return
    for merge in merges:
        _move(es, indices, merge)
    survivors = sorted({m.into for m in merges})
    helpers.bulk(es, _lead_counts(es, indices, survivors))
    es.indices.refresh(index=indices.articles)


def _move(es: Elasticsearch, indices: Indices, merge: Merge) -> None:
    """Give the merged story's members the survivor's story, each written only over the version read.

    A conflict is another run moving the same member (to the same story) or indexing it again:
    it is read again, and moved if it still needs it.
    """
    for _ in range(CONFLICT_RETRIES):
        hits = es.search(
            index=indices.articles,
            size=MEMBERS,
            seq_no_primary_term=True,
            query={"term": {"story.id": merge.merged}},
        )["hits"]["hits"]
        if not hits:
            return
        story = {"id": merge.into, "first_seen": merge.first_seen.isoformat(), "lead": False}
        actions = [
            {
                "_index": hit["_index"],
                "_id": hit["_id"],
                "if_seq_no": hit["_seq_no"],
                "if_primary_term": hit["_primary_term"],
                # Only its own language stays: a lead's size and languages go with the lead.
                "_source": hit["_source"] | {"story": story | {"language": hit["_source"]["story"].get("language")}},
            }
            for hit in hits
        ]
        conflicts = 0
        for ok, item in helpers.streaming_bulk(es, actions, raise_on_error=False, max_retries=3):
            detail: dict[str, Any] = next(iter(item.values()), {})
            if not ok and detail.get("status") != CONFLICT:
                raise StoryMergeError(f"story {merge.merged} not merged into {merge.into}: {detail.get('error')}")
            conflicts += not ok
        es.indices.refresh(index=indices.articles)
        if not conflicts:
            return
    raise StoryMergeError(f"story {merge.merged} still written concurrently after {CONFLICT_RETRIES} attempts")


def _lead_counts(es: Elasticsearch, indices: Indices, story_ids: list[str]) -> Iterable[dict[str, Any]]:
    response = es.search(
        index=indices.articles,
        size=0,
        query={"terms": {"story.id": story_ids}},
        aggs={
            "stories": {
                "terms": {"field": "story.id", "size": len(story_ids)},
                "aggs": {"languages": {"terms": {"field": "story.language", "size": 50}}},
            }
        },
    )
    for bucket in response["aggregations"]["stories"]["buckets"]:
        counts = {"size": bucket["doc_count"], "languages": sorted(b["key"] for b in bucket["languages"]["buckets"])}
        yield {
            "_op_type": "update",
            "_index": indices.articles,
            "_id": bucket["key"],
            "doc": {"story": counts},
            "retry_on_conflict": CONFLICT_RETRIES,  # the other run counting the same story
        }
