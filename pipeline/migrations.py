"""Stored articles rewritten in the shape the current code writes them; `newsmon setup` runs this.

Each migration asks only for the documents it changes (one query), so a repeat finds none, and
each write is conditional on the version read: a document the pipeline wrote again meanwhile is
in the new shape already and is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from elasticsearch import Elasticsearch, helpers

from pipeline.es import Indices, scan_index
from pipeline.models import NotTried

# Before extraction_attempts, a quarantined article's reason carried its count as text.
OLD_QUARANTINED = re.compile(r"quarantined after (\d+) unfinished attempts")


class MigrationError(Exception):
    """Elasticsearch refused to rewrite a stored article; the message names it."""


def migrate_articles(es: Elasticsearch, indices: Indices) -> int:
    """Bring stored articles to the current shape; returns how many were rewritten.

    Raises:
        MigrationError: a rewrite was refused for another reason than a newer write.
    """
    es.indices.refresh(index=indices.articles)
    written = 0
    actions = _quarantined(es, indices)
    for ok, item in helpers.streaming_bulk(es, actions, raise_on_error=False, max_retries=3):
        detail = item["update"]
        if not ok and detail.get("status") != 409:  # a conflict: the pipeline wrote it anew meanwhile
            raise MigrationError(f"article {detail.get('_id')} not migrated: {detail.get('error')}")
        written += ok
    return written


def _quarantined(es: Elasticsearch, indices: Indices) -> Iterator[dict[str, Any]]:
    """`quarantined after N unfinished attempts` → the code `quarantined` and extraction_attempts N."""
    query = {"prefix": {"extraction_reason": "quarantined after "}}
    reasons = ["extraction_reason"]
    for hit in scan_index(es, indices.articles, seq_no_primary_term=True, source_includes=reasons, query=query):
        found = OLD_QUARANTINED.fullmatch(hit["_source"]["extraction_reason"])
        if found is None:
            continue  # not this migration's text
        yield {
            "_op_type": "update",
            "_index": hit["_index"],
            "_id": hit["_id"],
            "if_seq_no": hit["_seq_no"],
            "if_primary_term": hit["_primary_term"],
            "doc": {"extraction_reason": NotTried.QUARANTINED.value, "extraction_attempts": int(found[1])},
        }
