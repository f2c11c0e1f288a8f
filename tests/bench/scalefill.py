"""A year of coverage for the scale section: articles, sent alerts and feed states, written fast.

Articles are the built benchmark pages copied with their own ids, dates (the year up to now),
sources and titles; each leads its own story, as a year of distinct reports would. The
index is filled with refresh off and no replicas, in large bulk requests on two threads, and
its settings are restored after, so the measurements see a normal index; the fill then waits
for the node's merges of what it wrote to end. A year of coverage arrives over a year, and its
merges are long done when a name is added to the watchlist; right after a fill of 300,000, a
retag shared the node's cores with that merging (14.7 s of node CPU against 8 s once merged).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from elasticsearch import Elasticsearch, helpers

from pipeline.document import language_tag
from pipeline.es import Indices
from pipeline.feeds import FeedState
from pipeline.models import Feed
from pipeline.process import Document
from pipeline.stories import Fingerprint, story_marks
from pipeline.text import normalise

SOURCES = 50
CHUNK = 2000
CHUNK_BYTES = 60 * 1024 * 1024
THREADS = 2
FAILING_EVERY = 50  # 2 % of feeds failing now
STALE_EVERY = 20  # 5 % with nothing new for 10 days
SINCE = "2025-01-01T00:00:00+00:00"  # the feeds' first answer
MERGE_WAIT_S = 900.0  # beyond this the measurements go on, merging or not
MERGE_QUIET_S = 10.0


@dataclass(frozen=True)
class Filled:
    """One filled article, as the sent-alert records need it."""

    id: str
    published: datetime


def articles(base: list[Document], count: int, now: datetime) -> Iterator[Document]:
    """`count` articles from the built pages: own ids, dates over the year before `now`, 50 sources."""
    rng = random.Random(18)
    start = now - timedelta(days=365)
    for n in range(count):
        _, source = base[n % len(base)]
        when = start + timedelta(seconds=rng.randrange(365 * 86400))
        published = when.isoformat()
        doc_id = f"scale-{n:07d}"
        suffix = f" ({n})"
        # The tags that read the title and the date follow them, as the tagger would have written them.
        marks = sorted({*source["story_marks"], *story_marks(normalise(suffix))})
        mentions = {m["id"]: m["count"] for m in source["entity_mentions"]}
        titled = Fingerprint.of_terms(source["story_fingerprint"]).title_entities
        doc = source | {
            "title": f"{source.get('title') or ''}{suffix}",
            "story_marks": marks,
            "story_fingerprint": Fingerprint.of_article(mentions, marks, when, titled).terms(),
            "source": source["source"] | {"name": f"source-{n % SOURCES}"},
            "published_at": published,
            "fetched_at": published,
            "indexed_at": published,
        }
        language = language_tag(doc)
        doc["story"] = {
            "id": doc_id,
            "lead": True,
            "first_seen": published,
            "language": language,
            "size": 1,
            "languages": [language],
        }
        yield doc_id, doc


def fill(es: Elasticsearch, indices: Indices, docs: Iterator[Document]) -> list[Filled]:
    """Bulk-index the documents with refresh and replicas off, then restore both and refresh."""
    index = indices.articles
    current = es.indices.get_settings(index=index, flat_settings=True, include_defaults=False)
    kept = next(iter(current.values()))["settings"]
    restore = {k: kept.get(f"index.{k}") for k in ("refresh_interval", "number_of_replicas")}
    es.indices.put_settings(index=index, settings={"index": {"refresh_interval": "-1", "number_of_replicas": 0}})
    filled: list[Filled] = []

    def actions() -> Iterator[dict[str, Any]]:
        for doc_id, doc in docs:
            filled.append(Filled(doc_id, datetime.fromisoformat(doc["published_at"])))
            yield {"_index": index, "_id": doc_id, "_source": doc}

    try:
        for ok, item in helpers.parallel_bulk(
            es.options(request_timeout=300),
            actions(),
            thread_count=THREADS,
            chunk_size=CHUNK,
            max_chunk_bytes=CHUNK_BYTES,
            raise_on_error=False,
        ):
            if not ok:
                raise RuntimeError(f"scale fill: document rejected: {str(item)[:300]}")
    finally:
        es.indices.put_settings(index=index, settings={"index": restore})
        es.options(request_timeout=600).indices.refresh(index=index)
    _wait_for_merges(es, index)
    return filled


def _wait_for_merges(es: Elasticsearch, index: str) -> None:
    """Until no merge has run for MERGE_QUIET_S: the node schedules them a moment after a refresh."""
    deadline = time.monotonic() + MERGE_WAIT_S
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        merges = es.indices.stats(index=index, metric="merge")["_all"]["primaries"]["merges"]
        if merges["current"]:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= MERGE_QUIET_S:
            return
        time.sleep(0.5)


def sent_records(es: Elasticsearch, indices: Indices, rules: list[str], filled: list[Filled], count: int) -> int:
    """`count` sent-alert records: every rule's pairs with the newest articles first (a year of
    alerting keeps the recent ones), then pairs of retired rules with older ones."""
    newest = sorted(filled, key=lambda f: f.published, reverse=True)
    names = [*rules, *(f"retired-rule-{k}" for k in range(count // max(1, len(newest)) + 1))]

    def actions() -> Iterator[dict[str, Any]]:
        written = 0
        for rule in names:
            for article in newest:
                if written == count:
                    return
                sent = (article.published + timedelta(minutes=5)).isoformat()
                yield {
                    "_index": indices.alerts,
                    "_id": f"{rule}:{article.id}",
                    "_source": {
                        "kind": "sent",
                        "rule": rule,
                        "article_id": article.id,
                        "message_id": f"<scale-{written}@newsmon.local>",
                        "recipients": ["desk@example.org"],
                        "period": None,
                        "owner": "scale-fill",
                        "sent_at": sent,
                    },
                }
                written += 1

    done = sum(ok for ok, _ in helpers.parallel_bulk(es, actions(), thread_count=THREADS, chunk_size=CHUNK))
    es.indices.refresh(index=indices.alerts)
    return done


def feed_states(es: Elasticsearch, indices: Indices, count: int, now: datetime) -> list[Feed]:
    """`count` feeds with a state each: most healthy and fresh, some failing, some stale."""
    feeds = [Feed(f"scale-feed-{n:05d}", f"http://feeds.scale.test/{n}.xml", "zh", 30, "") for n in range(count)]

    def actions() -> Iterator[dict[str, Any]]:
        for n, feed in enumerate(feeds):
            state = FeedState(feed.name, feed.url, feed.language, etag=f'"{n}"', first_success_at=SINCE)
            state.last_polled_at = state.last_success_at = now.isoformat()
            quiet = timedelta(days=10 if n % STALE_EVERY == 0 else 0, hours=1)
            state.last_new_entry_at = (now - quiet).isoformat()
            if n % FAILING_EVERY == 0:
                state.consecutive_errors, state.healthy = 3, False
                state.last_status, state.last_error = "failed", f"http://feeds.scale.test/{n}.xml: http_503"
            yield {"_index": indices.feeds, "_id": feed.name, "_source": asdict(state)}

    helpers.bulk(es, actions(), chunk_size=CHUNK, refresh=True)
    return feeds
