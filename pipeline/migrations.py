"""Stored documents rewritten in the shape the current code writes them; `newsmon setup` runs this.

Each migration asks only for the documents it changes (one query), so a repeat finds none, and
each write is conditional on the version read: a document the pipeline wrote again meanwhile is
in the new shape already and is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from elasticsearch import Elasticsearch, helpers

from pipeline.entries import EntryError, EntryState, ErrorKind
from pipeline.es import Indices, scan_index
from pipeline.fetch import FetchReason
from pipeline.models import BuildFailure, NotTried

# Before extraction_attempts, a quarantined article's reason carried its count as text.
OLD_QUARANTINED = re.compile(r"quarantined after (\d+) unfinished attempts")
# Before error_kind, an entry's last_error was all there was: the texts the code wrote.
OLD_BUILD_FAILED = re.compile(r"quarantined after \d+ attempts: (.+)|(.+) \(attempt \d+\)")
OLD_FETCH_FAILED = re.compile(r"\S+: ([a-z_]+?)(?:_\d{3})?(?:: .*)?", re.S)  # "{url}: {label}[: {detail}]"


class MigrationError(Exception):
    """Elasticsearch refused to rewrite a stored document; the message names it."""


def migrate_stored(es: Elasticsearch, indices: Indices) -> int:
    """Bring stored articles and entries to the current shape; returns how many were rewritten.

    Raises:
        MigrationError: a rewrite was refused for another reason than a newer write.
    """
    es.indices.refresh(index=[indices.articles, indices.entries])
    written = 0
    for actions in (_quarantined(es, indices), _error_kinds(es, indices)):
        for ok, item in helpers.streaming_bulk(es, actions, raise_on_error=False, max_retries=3):
            detail = item["update"]
            if not ok and detail.get("status") != 409:  # a conflict: the pipeline wrote it anew meanwhile
                raise MigrationError(f"{detail.get('_index')} {detail.get('_id')} not migrated: {detail.get('error')}")
            written += ok
    return written


def _update(hit: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "_op_type": "update",
        "_index": hit["_index"],
        "_id": hit["_id"],
        "if_seq_no": hit["_seq_no"],
        "if_primary_term": hit["_primary_term"],
        "doc": doc,
    }


def _quarantined(es: Elasticsearch, indices: Indices) -> Iterator[dict[str, Any]]:
    """`quarantined after N unfinished attempts` → the code `quarantined` and extraction_attempts N."""
    query = {"prefix": {"extraction_reason": "quarantined after "}}
    reasons = ["extraction_reason"]
    for hit in scan_index(es, indices.articles, seq_no_primary_term=True, source_includes=reasons, query=query):
        found = OLD_QUARANTINED.fullmatch(hit["_source"]["extraction_reason"])
        if found is None:
            continue  # not this migration's text
        yield _update(hit, {"extraction_reason": NotTried.QUARANTINED.value, "extraction_attempts": int(found[1])})


def _error_kinds(es: Elasticsearch, indices: Indices) -> Iterator[dict[str, Any]]:
    """An entry's last_error, written before error_kind → its error_kind beside it."""
    query = {"bool": {"filter": {"exists": {"field": "last_error"}}, "must_not": {"exists": {"field": "error_kind"}}}}
    fields = ["last_error", "state"]
    for hit in scan_index(es, indices.entries, seq_no_primary_term=True, source_includes=fields, query=query):
        kind = old_error_kind(hit["_source"]["last_error"], EntryState(hit["_source"]["state"]))
        if kind is not None:
            yield _update(hit, {"error_kind": kind.value})


def old_error_kind(text: str, state: EntryState) -> ErrorKind | None:
    """The code of a last_error as the code before error_kind wrote it; None for a text it never wrote."""
    if OLD_QUARANTINED.fullmatch(text):
        return EntryError.UNFINISHED
    built = OLD_BUILD_FAILED.fullmatch(text)
    detail = (built[1] or built[2]) if built else ""
    if detail.startswith("error: "):
        return EntryError.of_build(BuildFailure.ERROR)
    if detail in set(BuildFailure):
        return EntryError.of_build(BuildFailure(detail))
    fetched = OLD_FETCH_FAILED.fullmatch(text)
    if fetched and fetched[1] in set(FetchReason):
        return FetchReason(fetched[1])
    # Only Elasticsearch's refusal of the article ended an entry with a text of its own.
    return EntryError.REJECTED if state is EntryState.FAILED else None
