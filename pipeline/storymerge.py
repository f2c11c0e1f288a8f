"""Stories two runs started for one event at once, merged into one when the runs end.

A run sees other runs' articles only once they are refreshed, so two runs indexing two reports
of one event at the same instant can each start a story. After its final refresh, a run checks
each story it started against the stories others started within the window (one search by
entity ids and window, never a scan): its lead meets them under the rule of pipeline.stories
as it would arriving now. When one matches, the later story (by first_seen, then id) merges
into the earlier: both runs order the pair alike, so they agree, and merging again changes
nothing. Its members take the survivor's id and start, its lead stops leading, and the
survivor's lead gets its size and languages counted again.

A merge is marked on the merged story's lead (`story.merge`: the survivor and its start) before
any member moves, and the mark goes only once the survivor's lead is counted. A merge the node
refused half way (StoryMergeError) keeps its mark, so the next run's `resume` finishes it."""

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
RESUMED = 100  # merges left half done that one run finishes at most
MISSING = 404


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


def resume(es: Elasticsearch, indices: Indices) -> int:
    """Finish the merges that earlier runs left half done (marked, not finished); returns how many.

    One search for the marks, so a run pays next to nothing when none is pending.
    """
    hits = es.search(
        index=indices.articles,
        size=RESUMED,
        source_includes=["story.merge"],
        query={"exists": {"field": "story.merge.into"}},
    )["hits"]["hits"]
    if not hits:
        return 0
    marks = {hit["_id"]: hit["_source"]["story"]["merge"] for hit in hits}
    merges = _followed(es, indices, marks)
    _apply(es, indices, merges)
    return len(merges)


def _followed(es: Elasticsearch, indices: Indices, marks: dict[str, dict[str, str]]) -> list[Merge]:
    """Each marked merge, its survivor followed to the story that still leads.

    A survivor merged since into another story (its lead moved there, or is marked to move) hands the
    members on, and so on to the chain's end: one mget per step of the longest chain. A chain that comes
    back to a story on it (no run orders merges so: a bug or a hand edit) ends at the least id of the
    loop, so the loop's stories join one and the story at that id keeps leading.
    """
    stories: dict[str, dict[str, Any] | None] = {}  # story id -> its lead's story, None when not in the index
    chains = {merged: [(mark["into"], mark["first_seen"])] for merged, mark in marks.items()}
    merges = []
    while chains:
        unread = sorted({chain[-1][0] for chain in chains.values()} - stories.keys())
        if unread:
            docs = es.mget(index=indices.articles, ids=unread, source_includes=["story"])["docs"]
            stories |= {d["_id"]: d["_source"]["story"] if d.get("found") else None for d in docs}
        for merged, chain in sorted(chains.items()):
            into, first_seen = chain[-1]
            onward = _onward(into, stories[into])
            on_chain = [merged, *(story_id for story_id, _ in chain)]
            if onward is not None and onward[0] in on_chain:
                into = min(on_chain[on_chain.index(onward[0]) :])
                first_seen = dict(chain).get(into, first_seen)
            elif onward is not None:
                chain.append(onward)
                continue
            merges.append(Merge(merged, into, datetime.fromisoformat(first_seen)))
            del chains[merged]
    return merges


def _onward(story_id: str, story: dict[str, Any] | None) -> tuple[str, str] | None:
    """The story a survivor's members go on to (its id and start), or None when it still leads."""
    if story is None:
        return None  # its lead is not in the index: the mark's survivor stands
    if story["id"] != story_id:
        return story["id"], story["first_seen"]
    merge = story.get("merge")
    return (merge["into"], merge["first_seen"]) if merge else None


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
    """Mark the merges, move the merged stories' members, count the survivors' members on their leads,
    then drop the marks."""
    if not merges:
        return
    _write(es, indices, [_mark(m.merged, {"into": m.into, "first_seen": m.first_seen.isoformat()}) for m in merges])
    for merge in merges:
        if merge.merged != merge.into:  # a story a loop of marks ended at keeps leading
            _move(es, indices, merge)
    survivors = sorted({m.into for m in merges})
    _write(es, indices, list(_lead_counts(es, indices, survivors)))
    _write(es, indices, [_mark(m.merged, None) for m in merges])


def _mark(lead: str, merge: dict[str, str] | None) -> dict[str, Any]:
    return {"_op_type": "update", "_id": lead, "doc": {"story": {"merge": merge}}}


def _write(es: Elasticsearch, indices: Indices, updates: list[dict[str, Any]]) -> None:
    """Updates of the merge's leads, then a refresh; a refused one raises StoryMergeError.

    A lead that is not in the index (Elasticsearch rejected the article itself) has nothing to mark or
    count: its story's other members still move.
    """
    actions = [u | {"_index": indices.articles, "retry_on_conflict": CONFLICT_RETRIES} for u in updates]
    for ok, item in helpers.streaming_bulk(es, actions, raise_on_error=False, max_retries=3):
        detail = item["update"]
        if not ok and detail.get("status") != MISSING:
            raise StoryMergeError(f"story lead {detail.get('_id')} not updated: {detail.get('error')}")
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
                # Only its own language stays (a lead's size and languages go with the lead), and the
                # merged lead's mark, until the survivor is counted.
                "_source": hit["_source"] | {"story": story | _kept(hit["_source"]["story"])},
            }
            for hit in hits
        ]
        conflicts, refused = 0, []
        for ok, item in helpers.streaming_bulk(es, actions, raise_on_error=False, max_retries=3):
            detail: dict[str, Any] = next(iter(item.values()), {})
            if not ok and detail.get("status") != CONFLICT:
                refused.append(f"{detail.get('_id')}: {detail.get('error')}")
            conflicts += not ok
        es.indices.refresh(index=indices.articles)
        if refused:
            raise StoryMergeError(f"story {merge.merged} not merged into {merge.into}: {refused[0]}")
        if not conflicts:
            return
    raise StoryMergeError(f"story {merge.merged} still written concurrently after {CONFLICT_RETRIES} attempts")


def _kept(story: dict[str, Any]) -> dict[str, Any]:
    return {"language": story.get("language")} | ({"merge": story["merge"]} if story.get("merge") else {})


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
        # A conflict is the other run counting the same story: retried.
        yield {"_op_type": "update", "_id": bucket["key"], "doc": {"story": counts}}
