"""The trigger behind newsmon_stream: polls due feeds in the triggerer, fires when entries were queued.

Each look is the monitor's own poll (`pipeline.run.poll_stage`): only feeds whose
interval has passed are fetched, with If-None-Match/If-Modified-Since, and their
state and back-off are saved to the feeds index exactly as newsmon_monitor saves
them, so the two never poll a feed twice in one interval. The look runs in a thread
(the Elasticsearch client and the parser block) and never ends the trigger: a fault
is logged with its reason and the next look tries again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

log = logging.getLogger(__name__)

# After a failed look (Elasticsearch down, a bad feeds.yaml): long enough not to flood the log.
RETRY_SECONDS = 30.0


class NewFeedEntriesTrigger(BaseEventTrigger):
    """Yields one event per look that queued new entries: {"new": count, "polled_at": iso time}."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            started = datetime.now(UTC)
            counts, wait = await look()
            if counts.get("new"):
                yield TriggerEvent({"new": counts["new"], "polled_at": started.isoformat()})
            await asyncio.sleep(wait)


async def look() -> tuple[dict[str, Any], float]:
    """One poll of the due feeds: its counts, and the seconds until the next look."""
    lookup = await _connections()
    try:
        return await asyncio.to_thread(_poll_due_feeds, lookup)
    except Exception as exc:
        log.error("newsmon_stream: feed poll failed, next look in %.0f s: %s", RETRY_SECONDS, exc)
        return {}, RETRY_SECONDS


async def _connections() -> Any:
    """The connections a poll reads, fetched here: the triggerer answers lookups only on its event loop."""
    from pipeline.connections import ES_CONN_ID, SMTP_CONN_ID

    found: dict[str, Any] = {}
    for conn_id in (ES_CONN_ID, SMTP_CONN_ID):
        try:
            found[conn_id] = await BaseHook.aget_connection(conn_id)
        except Exception as exc:  # re-raised by the lookup, where pipeline.connections judges it
            found[conn_id] = exc

    def lookup(conn_id: str) -> Any:
        value = found.get(conn_id, AirflowNotFoundException(conn_id))
        if isinstance(value, Exception):
            raise value
        return value

    return lookup


def _poll_due_feeds(lookup: Any) -> tuple[dict[str, Any], float]:
    from pipeline.connections import settings_from_connections
    from pipeline.es import open_store
    from pipeline.run import configured_feeds, poll_stage

    settings, _ = settings_from_connections(lookup, AirflowNotFoundException)
    es, indices = open_store(settings)
    try:
        return poll_stage(settings, es, indices, configured_feeds(settings)), settings.stream_poll_seconds
    finally:
        es.close()
