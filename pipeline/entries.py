"""The queue of feed entries waiting to become articles, kept in Elasticsearch.

Polling writes new entries here before it saves the feed's ETag, and an entry
is marked done only after its article is indexed. A run killed at any point
therefore leaves its work pending for the next run: nothing lost, and since
article ids come from canonical URLs, nothing doubled.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import datetime
from typing import Any

from elasticsearch import Elasticsearch, helpers

from pipeline.es import Indices
from pipeline.models import FeedEntry

PENDING, DONE, RETRY, FAILED = "pending", "done", "retry", "failed"
MAX_ATTEMPTS = 3
MGET_CHUNK = 1000


def enqueue(es: Elasticsearch, indices: Indices, entries: list[FeedEntry], now: datetime) -> list[FeedEntry]:
    """Queue entries not seen before; return them. Entries seen via another feed record it."""
    unique: dict[str, FeedEntry] = {}
    feeds_of: defaultdict[str, set[str]] = defaultdict(set)
    for entry in entries:
        doc_id = entry.article_id
        unique.setdefault(doc_id, entry)
        feeds_of[doc_id].add(entry.feed)
    if not unique:
        return []
    ids = list(unique)
    known: dict[str, list[str]] = {}
    for start in range(0, len(ids), MGET_CHUNK):
        found = es.mget(index=indices.entries, ids=ids[start : start + MGET_CHUNK], source=["feeds"])["docs"]
        known |= {d["_id"]: d["_source"].get("feeds", []) for d in found if d.get("found")}
    actions: list[dict[str, Any]] = []
    new = []
    for doc_id, entry in unique.items():
        if doc_id in known:
            feeds = sorted({*known[doc_id], *feeds_of[doc_id]})
            if feeds != sorted(known[doc_id]):
                actions.append(
                    {"_op_type": "update", "_index": indices.entries, "_id": doc_id, "doc": {"feeds": feeds}}
                )
                # An article already built from the entry shows the new feed too.
                actions.append(
                    {
                        "_op_type": "update",
                        "_index": indices.articles,
                        "_id": doc_id,
                        "doc": {"source": {"feeds": feeds}},
                    }
                )
            continue
        new.append(replace(entry, feeds=tuple(sorted(feeds_of[doc_id]))))
        actions.append(
            {
                "_op_type": "create",
                "_index": indices.entries,
                "_id": doc_id,
                "_source": {
                    **_entry_source(entry),
                    "feeds": sorted(feeds_of[doc_id]),
                    "state": PENDING,
                    "attempts": 0,
                    "first_seen_at": now.isoformat(),
                    "updated_at": now.isoformat(),
                },
            }
        )
    # Mapped poll tasks run side by side: an entry another task queued first is a 409, not an error.
    _, errors = helpers.bulk(es, actions, refresh=True, raise_on_error=False)
    failures = errors if isinstance(errors, list) else []
    conflicts = {e["create"]["_id"] for e in failures if e.get("create", {}).get("status") == 409}
    # An entry still queued has no article yet: its article is built with every feed.
    not_built = [e for e in failures if e.get("update", {}).get("_index") != indices.entries and _missing(e)]
    if len(conflicts) + len(not_built) != len(failures):
        raise RuntimeError(f"queueing entries in {indices.entries} failed: {failures[0]}")
    return [e for e in new if e.article_id not in conflicts]


def _missing(error: dict[str, Any]) -> bool:
    return bool(error.get("update", {}).get("status") == 404)


def _entry_source(entry: FeedEntry) -> dict[str, Any]:
    return {
        "url": entry.url,
        "link": entry.link,
        "guids": [entry.guid],
        "title": entry.title,
        "summary": entry.summary,
        "published": entry.published.isoformat() if entry.published else None,
        "language": entry.language,
        "timezone": entry.timezone,
        "feed": entry.feed,
    }


def pending(es: Elasticsearch, indices: Indices, limit: int = 10_000) -> list[tuple[FeedEntry, int]]:
    """Entries still to process, oldest first, with their attempt counts."""
    response = es.search(
        index=indices.entries,
        size=limit,
        sort=[{"first_seen_at": "asc"}],
        query={
            "bool": {"filter": [{"terms": {"state": [PENDING, RETRY]}}, {"range": {"attempts": {"lt": MAX_ATTEMPTS}}}]}
        },
    )
    out = []
    for hit in response["hits"]["hits"]:
        src = hit["_source"]
        published = datetime.fromisoformat(src["published"]) if src.get("published") else None
        entry = FeedEntry(
            feed=src.get("feed") or src["feeds"][0],
            url=src["url"],
            link=src["link"],
            guid=src["guids"][0],
            title=src.get("title") or "",
            summary=src.get("summary") or "",
            published=published,
            language=src["language"],
            timezone=src["timezone"],
            feeds=tuple(src.get("feeds") or ()),
        )
        out.append((entry, int(src.get("attempts", 0))))
    return out


def mark(es: Elasticsearch, indices: Indices, outcomes: dict[str, tuple[str, int, str | None]], now: datetime) -> None:
    """Record (state, attempts, error) per entry id after its article is indexed."""
    actions = (
        {
            "_op_type": "update",
            "_index": indices.entries,
            "_id": doc_id,
            "doc": {"state": state, "attempts": attempts, "last_error": error, "updated_at": now.isoformat()},
        }
        for doc_id, (state, attempts, error) in outcomes.items()
    )
    helpers.bulk(es, actions, refresh=True)
