"""Settings from orchestrator connections (Airflow's `elasticsearch_default`, `smtp_default`).

Kept free of Airflow imports: the DAGs pass in their connection lookup, and
anything with host/port/login/password/schema/extra_dejson attributes works.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pipeline.config import Settings, load_settings
from pipeline.mail import SmtpConfig

log = logging.getLogger(__name__)

ES_CONN_ID = "elasticsearch_default"
# Optional, privileged (manage index templates and indices): only `setup` uses it.
ES_SETUP_CONN_ID = "elasticsearch_setup"
SMTP_CONN_ID = "smtp_default"


def _lookup(lookup: Callable[[str], Any], conn_id: str) -> Any | None:
    try:
        return lookup(conn_id)
    except Exception as exc:  # the orchestrator's own "not found" type; absent means use NEWSMON_*
        log.info("connection %s not available (%s); using NEWSMON_* settings", conn_id, type(exc).__name__)
        return None


def es_overrides(conn: Any) -> dict[str, Any]:
    extra = getattr(conn, "extra_dejson", {}) or {}
    scheme = extra.get("scheme") or (conn.schema if conn.schema in {"http", "https"} else "http")
    overrides: dict[str, Any] = {"es_url": f"{scheme}://{conn.host}:{conn.port or 9200}"}
    if conn.login and conn.password:
        overrides |= {"es_username": conn.login, "es_password": conn.password}
    if extra.get("api_key"):
        overrides["es_api_key"] = extra["api_key"]
    if extra.get("ca_certs"):
        overrides["es_ca_certs"] = extra["ca_certs"]
    return overrides


def smtp_config(conn: Any, fallback: SmtpConfig) -> SmtpConfig:
    """Read an smtp-provider connection: its `disable_ssl`/`disable_tls` extras pick the security."""
    extra = getattr(conn, "extra_dejson", {}) or {}
    if not extra.get("disable_ssl", False):
        security = "ssl"
    elif not extra.get("disable_tls", False):
        security = "starttls"
    else:
        security = "none"
    return SmtpConfig(
        host=conn.host,
        port=int(conn.port or 25),
        security=security,
        user=conn.login or None,
        password=conn.password or None,
        sender=extra.get("from_email") or fallback.sender,
        timeout=float(extra.get("timeout", fallback.timeout)),
    )


def setup_settings_from_connections(lookup: Callable[[str], Any]) -> Settings | None:
    """Settings for `setup` from the privileged connection, or None when it is not configured."""
    conn = _lookup(lookup, ES_SETUP_CONN_ID)
    return load_settings(**es_overrides(conn)) if conn else None


def settings_from_connections(lookup: Callable[[str], Any]) -> tuple[Settings, SmtpConfig]:
    """Settings with Elasticsearch and SMTP taken from connections when they exist."""
    es_conn = _lookup(lookup, ES_CONN_ID)
    settings = load_settings(**(es_overrides(es_conn) if es_conn else {}))
    smtp = SmtpConfig.from_settings(settings)
    smtp_conn = _lookup(lookup, SMTP_CONN_ID)
    return settings, smtp_config(smtp_conn, smtp) if smtp_conn else smtp
