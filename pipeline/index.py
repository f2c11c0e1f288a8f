"""Index stage: tagged articles into Elasticsearch, in bulk; and `retag`.

Document ids come from canonical URLs (or the seed file), so indexing the same
article again overwrites it instead of adding a second copy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import Elasticsearch, helpers

from pipeline import storyindex
from pipeline.document import tag_fields
from pipeline.es import CONFLICT_RETRIES, Indices, StoreUnavailable, scan_index, transient
from pipeline.logs import log_stage
from pipeline.tag import Tagger

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
) -> BulkResult:
    """Index (id, document) pairs with the bulk helper, each with its story; searches see them at once.

    A document Elasticsearch rejects (retrying will not help) is reported in
    `rejected`, and the others are indexed.

    Raises:
        StoreUnavailable: the node went away; nothing is marked done, so a later run redoes it.
    """
    batch = list(docs)
    result = BulkResult()
    try:
        leads = storyindex.assign(es, indices, batch)
        actions = ({"_index": indices.articles, "_id": doc_id, "_source": doc} for doc_id, doc in batch)
        for ok, item in helpers.streaming_bulk(
            es,
            actions,
            chunk_size=chunk_size,
            raise_on_error=False,
            max_retries=3,
            initial_backoff=1,
        ):
            if ok:
                result.indexed += 1
            else:
                detail = item.get("index", {})
                result.rejected[str(detail.get("_id"))] = str(detail.get("error", item))[:300]
        storyindex.update_leads(es, leads)
        # The next batch's candidates are this one's stories.
        es.indices.refresh(index=indices.articles)
    except Exception as exc:
        if transient(exc):
            raise StoreUnavailable(f"Elasticsearch failed during bulk indexing: {exc}") from exc
        raise
    for doc_id, reason in result.rejected.items():
        log.warning("article %s rejected by Elasticsearch: %s", doc_id, reason)
    return result


def scan_articles(es: Elasticsearch, indices: Indices, fields: list[str]) -> Iterator[dict[str, Any]]:
    """Every article document, in pages over a point in time."""
    return scan_index(es, indices.articles, source_includes=fields)


def retag(es: Elasticsearch, indices: Indices, tagger: Tagger) -> dict[str, int]:
    """Re-apply the current watchlist to every document whose tags are older; no re-fetch."""
    counts = {"seen": 0, "retagged": 0}

    def updates() -> Iterator[dict[str, Any]]:
        for hit in scan_articles(es, indices, ["title", "body", "watchlist_version"]):
            counts["seen"] += 1
            src = hit["_source"]
            if src.get("watchlist_version") == tagger.watchlist.version:
                continue
            counts["retagged"] += 1
            tags = tagger.tag(src.get("title") or "", src.get("body") or "")
            # A poller adding a feed to the article meanwhile is a conflict to retry, not a failed retag.
            yield {
                "_op_type": "update",
                "_index": hit["_index"],
                "_id": hit["_id"],
                "doc": tag_fields(tags),
                "retry_on_conflict": CONFLICT_RETRIES,
            }

    helpers.bulk(es, updates(), chunk_size=200, max_retries=3)
    es.indices.refresh(index=indices.articles)
    log_stage("retag", counts)
    return counts


def stale_tag_count(es: Elasticsearch, indices: Indices, version: str) -> int:
    """Documents tagged with another watchlist than `version` (what `retag` would rewrite)."""
    query = {"bool": {"must_not": [{"term": {"watchlist_version": version}}]}}
    return int(es.count(index=indices.articles, query=query)["count"])
