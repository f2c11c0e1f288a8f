"""Index stage: tagged articles into Elasticsearch, in bulk; and `retag`.

Document ids come from canonical URLs (or the seed file), so indexing the same
article again overwrites it instead of adding a second copy, all but the analyst's verdict.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from elasticsearch import Elasticsearch, helpers

from pipeline import storyindex, tagpool
from pipeline.document import TAG_FIELDS
from pipeline.es import CONFLICT_RETRIES, Indices, StoreUnavailable, scan_index, transient
from pipeline.logs import log_stage
from pipeline.models import NAME_FREE_KEYWORDS
from pipeline.tag import Tagger
from pipeline.tagpool import chunked, tag_chunks

log = logging.getLogger(__name__)


@dataclass
class BulkResult:
    indexed: int = 0
    rejected: dict[str, str] = field(default_factory=dict)  # id -> Elasticsearch's reason


def bulk_index(
    es: Elasticsearch,
    indices: Indices,
    docs: Iterable[tuple[str, dict[str, Any]]],
    chunk_size: int = 200,
    run: storyindex.RunStories | None = None,
) -> BulkResult:
    """Index (id, document) pairs with the bulk helper, each with its story.

    Alone, searches see them at once (a refresh). One of a run's batches (`run`) is not refreshed:
    the run's next batches find their stories in `run`, and the run refreshes once at its end.

    A document Elasticsearch rejects (retrying will not help) is reported in
    `rejected`, and the others are indexed.

    Raises:
        StoreUnavailable: the node went away; nothing is marked done, so a later run redoes it.
    """
    batch = list(docs)
    result = BulkResult()
    try:
        leads = storyindex.assign(es, indices, batch, run)
        _write(es, indices, batch, chunk_size, result)
        storyindex.update_leads(es, leads)
        if run is None:
            es.indices.refresh(index=indices.articles)
    except Exception as exc:
        if transient(exc):
            raise StoreUnavailable(f"Elasticsearch failed during bulk indexing: {exc}") from exc
        raise
    for doc_id, reason in result.rejected.items():
        log.warning("article %s rejected by Elasticsearch: %s", doc_id, reason)
    return result


def _write(
    es: Elasticsearch, indices: Indices, batch: list[tuple[str, dict[str, Any]]], chunk_size: int, result: BulkResult
) -> None:
    """Write the batch, each stored document's `analyst` (`newsmon label`) carried over.

    Each write is conditional on the version whose verdict was read, so a label stored
    meanwhile makes it conflict, and the document is read and written again.
    """
    pending = batch
    for _ in range(CONFLICT_RETRIES):
        stored = _stored_versions(es, indices, [doc_id for doc_id, _ in pending])
        conflicts = set()
        for ok, item in helpers.streaming_bulk(
            es,
            _actions(indices, pending, stored),
            chunk_size=chunk_size,
            raise_on_error=False,
            max_retries=3,
            initial_backoff=1,
        ):
            detail: dict[str, Any] = next(iter(item.values()), {})
            if ok:
                result.indexed += 1
            elif detail.get("status") == CONFLICT:
                conflicts.add(str(detail.get("_id")))
            else:
                result.rejected[str(detail.get("_id"))] = str(detail.get("error", item))[:300]
        pending = [(doc_id, doc) for doc_id, doc in pending if doc_id in conflicts]
        if not pending:
            return
    for doc_id, _ in pending:
        result.rejected[doc_id] = f"still written concurrently after {CONFLICT_RETRIES} attempts"


CONFLICT = 409
Stored = dict[str, tuple[int, int, Any]]  # id -> (seq_no, primary_term, analyst or None)


def _stored_versions(es: Elasticsearch, indices: Indices, ids: list[str]) -> Stored:
    if not ids:
        return {}
    docs = es.mget(index=indices.articles, ids=ids, source_includes=["analyst"])["docs"]
    return {
        d["_id"]: (d["_seq_no"], d["_primary_term"], (d.get("_source") or {}).get("analyst"))
        for d in docs
        if d.get("found")
    }


def _actions(indices: Indices, docs: list[tuple[str, dict[str, Any]]], stored: Stored) -> Iterator[dict[str, Any]]:
    for doc_id, doc in docs:
        action: dict[str, Any] = {"_index": indices.articles, "_id": doc_id, "_source": doc}
        if doc_id in stored:
            seq_no, primary_term, analyst = stored[doc_id]
            action |= {"if_seq_no": seq_no, "if_primary_term": primary_term}
            if analyst:
                action["_source"] = {**doc, "analyst": analyst}
        else:
            action["_op_type"] = "create"  # one created meanwhile conflicts, and is read again
        yield action


Progress = Callable[[int, int], None]  # (done, total)
RETAG_CHUNK = 500  # articles per worker task and per bulk request
RETAG_POOL_FROM = 2_000  # articles from which a full retag tags on worker processes
BULK_IN_FLIGHT = 2  # bulk requests queued: the node rewrites one while this process tags the next


def retag(
    es: Elasticsearch,
    indices: Indices,
    tagger: Tagger,
    names: Collection[str] = (),
    progress: Progress | None = None,
    workers: int = 0,
    *,
    wall_timeout: float,
) -> dict[str, int]:
    """Re-apply the current watchlist to documents whose tags are older; no re-fetch.

    With `names` (the names added, edited or removed in the watchlist), only the documents
    that contain one of them are read: only their tags can change, and the index finds them
    on its analysed text (either script, any case), so the cost follows the change, not the
    index. Each is tagged again with what the stored document already read from its text
    alone (TextFacts), and written only when its tags changed. Without names, every stale
    document is tagged from scratch and written. A document is written whole, as read with its
    new tags, on the condition that it is still the version read: a partial update would cost
    the node a read and a merge of the stored document beside its re-indexing. One written
    meanwhile (a poller adding a feed, an analyst's label) is read and tagged again. Documents
    are streamed over a point in time, in bounded memory; from RETAG_POOL_FROM of them, a full
    retag tags on `workers` processes (0: one per CPU), each allowed `wall_timeout` seconds per
    chunk (tagpool.RetagStalled past it).
    """
    query = _stale_query(tagger.watchlist.version)
    if names:
        should = [{"multi_match": {"query": n, "type": "phrase", "fields": ["title", "body"]}} for n in names]
        query["bool"]["filter"] = [{"bool": {"should": should, "minimum_should_match": 1}}]
    total = int(es.count(index=indices.articles, query=query)["count"])
    counts = {"seen": int(es.count(index=indices.articles)["count"]), "retagged": 0, "unchanged": 0}
    hits = scan_index(es, indices.articles, query=query, seq_no_primary_term=True)
    held: dict[tuple[str, str], Read] = {}  # each read document until its write is made
    # With its stored TextFacts an article is tagged in about a millisecond: workers pay only for the others.
    from_scratch = _count_tagged_from_scratch(es, indices, query) if names else total
    pool = (workers or os.cpu_count() or 1) if from_scratch >= RETAG_POOL_FROM else 1

    def stored(found: Iterable[dict[str, Any]]) -> Iterator[tagpool.Stored]:
        for hit in found:
            held[(hit["_index"], hit["_id"])] = Read(hit["_source"], hit["_seq_no"], hit["_primary_term"])
            # Each hit's own index: behind the alias, an older one after a rollover; the date places its days.
            yield _stored(hit, compare=bool(names))

    def writes(found: Iterable[dict[str, Any]], report: bool) -> Iterator[dict[str, Any]]:
        done = 0
        for chunk in tag_chunks(tagger, chunked(stored(found), RETAG_CHUNK), pool, wall_timeout):
            for index, doc_id, fields in chunk:
                read = held.pop((index, doc_id))
                if not fields:
                    counts["unchanged"] += report
                    continue
                counts["retagged"] += report
                yield {
                    "_index": index,
                    "_id": doc_id,
                    "_source": read.source | fields,
                    "if_seq_no": read.seq_no,
                    "if_primary_term": read.primary_term,
                }
            done += len(chunk)
            if progress and report:
                progress(done, max(total, done))

    conflicts = _bulk_behind(es, writes(hits, report=True))
    for _ in range(CONFLICT_RETRIES):
        if not conflicts:
            break
        conflicts = _bulk_behind(es, writes(_read_again(es, conflicts), report=False))
    if conflicts:
        raise StoreUnavailable(
            f"retag: {len(conflicts)} articles still written concurrently after {CONFLICT_RETRIES} attempts "
            f"(e.g. {conflicts[0][1]}); run the retag again"
        )
    es.indices.refresh(index=indices.articles)
    log_stage("retag", {**counts, "names": len(names) or "all", "workers": pool})
    return counts


def _count_tagged_from_scratch(es: Elasticsearch, indices: Indices, query: dict[str, Any]) -> int:
    """Of the articles the query finds, those whose language leaves no TextFacts to reuse."""
    others = {"bool": {"filter": [query], "must_not": [{"terms": {"language": list(NAME_FREE_KEYWORDS)}}]}}
    return int(es.count(index=indices.articles, query=others)["count"])


@dataclass(frozen=True)
class Read:
    """A document as retag read it: its source, and the version a write of it is conditional on."""

    source: dict[str, Any]
    seq_no: int
    primary_term: int


def _bulk_behind(es: Elasticsearch, actions: Iterator[dict[str, Any]]) -> list[tuple[str, str]]:
    """Send the actions in bulk requests on another thread, while this one makes the next ones.

    Returns the (index, id) of the documents written meanwhile by others (conflicts); any other failure raises.
    """
    conflicts: list[tuple[str, str]] = []

    def send(chunk: list[dict[str, Any]]) -> None:
        for ok, item in helpers.streaming_bulk(
            es, chunk, chunk_size=RETAG_CHUNK, max_retries=3, raise_on_error=False, raise_on_exception=True
        ):
            detail: dict[str, Any] = next(iter(item.values()), {})
            if ok:
                continue
            if detail.get("status") != CONFLICT:
                raise helpers.BulkIndexError(f"retag: article {detail.get('_id')} not written", [item])
            conflicts.append((str(detail.get("_index")), str(detail.get("_id"))))

    with ThreadPoolExecutor(1, thread_name_prefix="retag-bulk") as sender:
        sent: deque[Future[None]] = deque()
        for chunk in chunked(actions, RETAG_CHUNK):
            sent.append(sender.submit(send, chunk))
            if len(sent) > BULK_IN_FLIGHT:
                sent.popleft().result()
        for future in sent:
            future.result()
    return conflicts


def _read_again(es: Elasticsearch, documents: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """The documents as stored now, as search hits; one deleted meanwhile is left out."""
    for index, doc_id in documents:
        found = es.options(ignore_status=404).get(index=index, id=doc_id).body
        if found.get("found"):
            yield found


def _stored(hit: dict[str, Any], compare: bool) -> tagpool.Stored:
    src = hit["_source"]
    published = datetime.fromisoformat(src["published_at"]) if src.get("published_at") else None
    before = {k: src.get(k) for k in TAG_FIELDS} if compare else None
    return hit["_index"], hit["_id"], src.get("title") or "", src.get("body") or "", published, before


def _stale_query(version: str) -> dict[str, Any]:
    return {"bool": {"must_not": [{"term": {"watchlist_version": version}}]}}


def stale_tag_count(es: Elasticsearch, indices: Indices, version: str) -> int:
    """Documents tagged with another watchlist than `version` (what `retag` would rewrite)."""
    return int(es.count(index=indices.articles, query=_stale_query(version))["count"])
