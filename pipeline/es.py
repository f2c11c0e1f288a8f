"""The Elasticsearch connection and the indices this project owns.

Everything here works on the integ-test distribution (no ingest, no scripts,
no `GET /`) and on the official image alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout
from elasticsearch import ApiError, Elasticsearch

from pipeline.config import Settings, mask_url
from pipeline.esnode import NodeError, default_node_url

CONFLICT_RETRIES = 5  # an update that meets a concurrent write to its document re-reads and retries


class StoreUnavailable(Exception):
    """Elasticsearch cannot be reached or refused the request; retrying later may work."""


@dataclass(frozen=True)
class Indices:
    prefix: str

    @property
    def articles(self) -> str:
        """The alias analysts and the pipeline use."""
        return f"{self.prefix}-articles"

    @property
    def articles_first(self) -> str:
        return f"{self.prefix}-articles-000001"

    @property
    def feeds(self) -> str:
        return f"{self.prefix}-feeds"

    @property
    def entries(self) -> str:
        return f"{self.prefix}-entries"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}-alerts"


def es_url(settings: Settings) -> str:
    if settings.es_url:
        return settings.es_url
    try:
        return default_node_url(settings)
    except NodeError as exc:
        raise StoreUnavailable(f"embedded Elasticsearch: {exc}") from exc


def connect(settings: Settings) -> Elasticsearch:
    """One client per process or task; checks the cluster answers."""
    url = es_url(settings)
    kwargs: dict[str, Any] = {"request_timeout": settings.es_timeout}
    # Explicit credentials beat the key file a deployment sets for every container.
    if settings.es_api_key:
        kwargs["api_key"] = settings.es_api_key.get_secret_value()
    elif settings.es_username and settings.es_password:
        kwargs["basic_auth"] = (settings.es_username, settings.es_password.get_secret_value())
    elif settings.es_api_key_file:
        kwargs["api_key"] = _read_key(settings.es_api_key_file)
    if settings.es_ca_certs:
        kwargs["ca_certs"] = str(settings.es_ca_certs)
    client = Elasticsearch(url, **kwargs)
    try:
        # Cluster health, not ping(): the integ-test zip has no `GET /`.
        client.options(request_timeout=10, max_retries=0).cluster.health()
    except (TransportConnectionError, ConnectionTimeout) as exc:
        raise StoreUnavailable(f"Elasticsearch at {mask_url(url)} is unreachable: {_reason(exc)}") from exc
    except ApiError as exc:
        raise StoreUnavailable(f"Elasticsearch at {mask_url(url)} answered {exc.status_code}: {exc.message}") from exc
    return client


def _read_key(path: Path) -> str:
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StoreUnavailable(f"NEWSMON_ES_API_KEY_FILE={path}: {exc.strerror}") from exc
    if not key:
        raise StoreUnavailable(f"NEWSMON_ES_API_KEY_FILE={path} is empty: run `newsmon api-key create --out {path}`")
    return key


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out"):
        if marker in text:
            return marker
    return text.splitlines()[0][:200] if text else type(exc).__name__


class NotSetUp(StoreUnavailable):
    """The indices do not exist yet: `newsmon setup` has not run against this cluster."""


def open_store(settings: Settings) -> tuple[Elasticsearch, Indices]:
    """A client and the index names, for the runtime: reads and writes documents only.

    Templates, indices and aliases belong to `newsmon setup` (pipeline/setup.py), so a
    least-privilege key suffices here. The embedded development node is set up on
    first use, as `make run` on a fresh machine needs no separate step.
    """
    es = connect(settings)
    indices = Indices(settings.index_prefix)
    try:
        ready = bool(es.indices.exists_alias(name=indices.articles))
    except (TransportConnectionError, ConnectionTimeout) as exc:
        raise StoreUnavailable(f"Elasticsearch unreachable: {_reason(exc)}") from exc
    if not ready and settings.es_url is None:
        from pipeline.setup import setup_indices

        setup_indices(es, settings)
    elif not ready:
        raise NotSetUp(
            f"Elasticsearch at {settings.es_url} has no alias {indices.articles}: "
            "run `newsmon setup` once, as a user allowed to manage index templates"
        )
    return es, indices


def transient(exc: BaseException) -> bool:
    """True for errors worth retrying later (node down, overloaded)."""
    if isinstance(exc, TransportConnectionError | ConnectionTimeout | StoreUnavailable):
        return True
    return isinstance(exc, ApiError) and exc.status_code in {429, 502, 503, 504}


def scan_index(es: Elasticsearch, index: str, **search: Any) -> Iterator[dict[str, Any]]:
    """Every hit of one index, in pages over a point in time; `search` adds request options."""
    pit = es.open_point_in_time(index=index, keep_alive="2m")["id"]
    try:
        search_after = None
        while True:
            # Without a total to count, each page stops at its 500th hit instead of matching on.
            page = es.search(
                pit={"id": pit, "keep_alive": "2m"},
                size=500,
                sort=["_shard_doc"],
                search_after=search_after,
                track_total_hits=False,
                **search,
            )
            hits = page["hits"]["hits"]
            if not hits:
                return
            yield from hits
            search_after = hits[-1]["sort"]
            pit = page.get("pit_id", pit)
    finally:
        es.close_point_in_time(id=pit)
