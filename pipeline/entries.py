"""The queue of feed entries waiting to become articles, kept in Elasticsearch.

Polling writes new entries here before it saves the feed's ETag. A run claims a
few entries at a time (counting the attempt in the same write, with optimistic
concurrency, so two runs never take the same entry), and marks each once its
article is indexed. A run killed at any point leaves its claims to expire after
NEWSMON_CLAIM_LEASE_SECONDS, when a later run takes them again: nothing lost,
and since article ids come from canonical URLs, nothing doubled.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from elasticsearch import Elasticsearch, helpers

from pipeline.es import CONFLICT_RETRIES, Indices
from pipeline.fetch import FetchReason
from pipeline.models import BuildFailure, FeedEntry

MGET_CHUNK = 1000


class EntryState(StrEnum):
    PENDING = "pending"  # queued, never finished
    RETRY = "retry"  # indexed from what we had, to be tried again by a later run
    DONE = "done"
    FAILED = "failed"  # never tried again (quarantined or rejected); the reason is in error_kind and last_error


class EntryError(StrEnum):
    """Why an attempt gave no article of its own, as a code to chart by (`error_kind`; last_error says more).

    A page that could not be fetched is recorded by its FetchReason instead (http, timeout, not_html, …):
    no value here is one of those.
    """

    UNFINISHED = "unfinished"  # earlier attempts never came back (they took the run down): quarantined, not tried
    EXTRACTION_TIMEOUT = "extraction_timeout"  # BuildFailure.TIMEOUT: past the CPU deadline
    EXTRACTION_STALLED = "extraction_stalled"  # BuildFailure.STALLED: past the wall-clock limit
    WORKER_DIED = "worker_died"  # BuildFailure.WORKER_DIED: the page crashed its worker twice
    BUILD_ERROR = "build_error"  # BuildFailure.ERROR: a Python exception while building
    REJECTED = "rejected"  # Elasticsearch refused the article

    @classmethod
    def of_build(cls, failure: BuildFailure) -> EntryError:
        return _BUILD_ERRORS[failure]


_BUILD_ERRORS = {
    BuildFailure.TIMEOUT: EntryError.EXTRACTION_TIMEOUT,
    BuildFailure.STALLED: EntryError.EXTRACTION_STALLED,
    BuildFailure.WORKER_DIED: EntryError.WORKER_DIED,
    BuildFailure.ERROR: EntryError.BUILD_ERROR,
}

ErrorKind = FetchReason | EntryError


@dataclass(frozen=True)
class Claim:
    """An entry this run holds until it marks it (or the lease runs out)."""

    entry: FeedEntry
    attempt: int  # this attempt's number, counted when the claim was taken
    token: str  # written on the entry; a mark only applies while the entry still carries it


@dataclass(frozen=True)
class Mark:
    state: EntryState
    error: str | None = None  # what went wrong, with its detail, for a person
    kind: ErrorKind | None = None  # its code, set with `error`


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
                    {
                        "_op_type": "update",
                        "_index": indices.entries,
                        "_id": doc_id,
                        "doc": {"feeds": feeds},
                        # A claim or mark of the same entry may land in between: retry, never raise.
                        "retry_on_conflict": CONFLICT_RETRIES,
                    }
                )
                # An article already built from the entry shows the new feed too.
                actions.append(
                    {
                        "_op_type": "update",
                        "_index": indices.articles,
                        "_id": doc_id,
                        "doc": {"source": {"feeds": feeds}},
                        "retry_on_conflict": CONFLICT_RETRIES,
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
                    "state": EntryState.PENDING.value,
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
        "outlet": entry.outlet,
        "outlet_url": entry.outlet_url,
    }


def _feed_entry(src: dict[str, Any]) -> FeedEntry:
    published = datetime.fromisoformat(src["published"]) if src.get("published") else None
    return FeedEntry(
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
        outlet=src.get("outlet") or "",
        outlet_url=src.get("outlet_url") or "",
    )


def _open_query(run_started: datetime) -> dict[str, Any]:
    """Pending or retry, and not held: never claimed, or released or expired before this run started
    (so an entry this run marks for retry waits for the next run)."""
    return {
        "bool": {
            "filter": [{"terms": {"state": [EntryState.PENDING.value, EntryState.RETRY.value]}}],
            "should": [
                {"bool": {"must_not": {"exists": {"field": "claimed_until"}}}},
                {"range": {"claimed_until": {"lt": run_started.isoformat()}}},
            ],
            "minimum_should_match": 1,
        }
    }


def open_count(es: Elasticsearch, indices: Indices, run_started: datetime) -> int:
    """Entries a run started at `run_started` could still claim."""
    return int(es.count(index=indices.entries, query=_open_query(run_started))["count"])


def claim(
    es: Elasticsearch, indices: Indices, size: int, run_started: datetime, lease: timedelta, now: datetime
) -> tuple[list[Claim], bool]:
    """Claim up to `size` open entries, oldest first; returns (claims, whether any were open).

    Each claim is a compare-and-set on the entry's sequence number that also counts
    the attempt, so a crash after it still counts, and of two runs only one wins.
    """
    response = es.search(
        index=indices.entries,
        size=size,
        sort=[{"first_seen_at": "asc"}, {"url": "asc"}],
        seq_no_primary_term=True,
        query=_open_query(run_started),
    )
    hits = response["hits"]["hits"]
    if not hits:
        return [], False
    operations: list[dict[str, Any]] = []
    candidates: list[tuple[FeedEntry, int, str]] = []
    for hit in hits:
        token = uuid.uuid4().hex
        attempt = int(hit["_source"].get("attempts", 0)) + 1
        operations += [
            {"update": {"_id": hit["_id"], "if_seq_no": hit["_seq_no"], "if_primary_term": hit["_primary_term"]}},
            {
                "doc": {
                    "attempts": attempt,
                    "claim_token": token,
                    "claimed_until": (now + lease).isoformat(),
                    "updated_at": now.isoformat(),
                }
            },
        ]
        candidates.append((_feed_entry(hit["_source"]), attempt, token))
    result = es.bulk(index=indices.entries, operations=operations, refresh=True)
    claims = []
    for (entry, attempt, token), item in zip(candidates, result["items"], strict=True):
        status = item["update"]["status"]
        if status == 200:
            claims.append(Claim(entry, attempt, token))
        elif status != 409:  # 409: another run claimed it between our search and our write
            raise RuntimeError(f"claiming {entry.url} in {indices.entries} failed: {item['update'].get('error')}")
    return claims, True


def mark(es: Elasticsearch, indices: Indices, marks: dict[str, tuple[Claim, Mark]], now: datetime) -> None:
    """Record each claimed entry's end state and release it, unless another run has taken it over since.

    Not refreshed (the run refreshes once at its end): until then searches see the claim, whose
    lease keeps every run from claiming the entry again.
    """
    todo = dict(marks)
    for _ in range(CONFLICT_RETRIES):
        if not todo:
            return
        docs = es.mget(index=indices.entries, ids=list(todo), source=["claim_token"])["docs"]
        operations: list[dict[str, Any]] = []
        for doc in docs:
            held, outcome = todo[doc["_id"]]
            if not doc.get("found") or doc["_source"].get("claim_token") != held.token:
                del todo[doc["_id"]]  # the lease ran out and another run holds it now: theirs to mark
                continue
            operations += [
                {"update": {"_id": doc["_id"], "if_seq_no": doc["_seq_no"], "if_primary_term": doc["_primary_term"]}},
                {
                    "doc": {
                        "state": outcome.state.value,
                        "last_error": outcome.error,
                        "error_kind": outcome.kind.value if outcome.kind else None,
                        "claim_token": None,
                        "claimed_until": now.isoformat(),
                        "updated_at": now.isoformat(),
                    }
                },
            ]
        if not operations:
            return
        result = es.bulk(index=indices.entries, operations=operations)
        for item in result["items"]:
            status, doc_id = item["update"]["status"], item["update"]["_id"]
            if status == 200:
                del todo[doc_id]
            elif status != 409:  # 409: a poller added a feed to the entry meanwhile; read it again
                raise RuntimeError(f"marking entry {doc_id} in {indices.entries} failed: {item['update'].get('error')}")
    if todo:
        raise RuntimeError(f"marking {len(todo)} entries in {indices.entries} kept meeting concurrent writes")
