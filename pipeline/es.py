"""The Elasticsearch connection and the indices this project owns.

Everything here works on the integ-test distribution (no ingest, no scripts,
no `GET /`) and on the official image alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout
from elasticsearch import ApiError, Elasticsearch

from pipeline.config import Settings, mask_url
from pipeline.esnode import NodeError, default_node_url

TEMPLATES = ("articles", "feeds", "entries", "alerts")


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
    if settings.es_api_key:
        kwargs["api_key"] = settings.es_api_key.get_secret_value()
    elif settings.es_username and settings.es_password:
        kwargs["basic_auth"] = (settings.es_username, settings.es_password.get_secret_value())
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


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out"):
        if marker in text:
            return marker
    return text.splitlines()[0][:200] if text else type(exc).__name__


def ensure_indices(es: Elasticsearch, settings: Settings) -> Indices:
    """Install the index templates and create the indices and the write alias (idempotent)."""
    indices = Indices(settings.index_prefix)
    try:
        for name in TEMPLATES:
            body = json.loads(settings.config_file(f"templates/{name}.json").read_text())
            body["index_patterns"] = [p.replace("newsmon", settings.index_prefix, 1) for p in body["index_patterns"]]
            es.indices.put_index_template(name=f"{settings.index_prefix}-{name}", **body)
        if not es.indices.exists_alias(name=indices.articles):
            _create(es, indices.articles_first, aliases={indices.articles: {"is_write_index": True}})
        for name, index in (("feeds", indices.feeds), ("entries", indices.entries), ("alerts", indices.alerts)):
            if es.indices.exists(index=index):
                # An index made by an older version gains the fields added since (adding fields is idempotent).
                body = json.loads(settings.config_file(f"templates/{name}.json").read_text())
                es.indices.put_mapping(index=index, properties=body["template"]["mappings"]["properties"])
            else:
                _create(es, index)
    except (TransportConnectionError, ConnectionTimeout) as exc:
        raise StoreUnavailable(f"Elasticsearch unreachable while creating indices: {_reason(exc)}") from exc
    return indices


def _create(es: Elasticsearch, index: str, **body: Any) -> None:
    """Create an index; one another process created first is as good (runs and mapped tasks race here)."""
    try:
        es.indices.create(index=index, **body)
    except ApiError as exc:
        if exc.error != "resource_already_exists_exception":
            raise


def open_store(settings: Settings) -> tuple[Elasticsearch, Indices]:
    es = connect(settings)
    return es, ensure_indices(es, settings)


def transient(exc: BaseException) -> bool:
    """True for errors worth retrying later (node down, overloaded)."""
    if isinstance(exc, TransportConnectionError | ConnectionTimeout | StoreUnavailable):
        return True
    return isinstance(exc, ApiError) and exc.status_code in {429, 502, 503, 504}
