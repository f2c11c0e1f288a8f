"""Settings from orchestrator connections (Airflow's `elasticsearch_default`, `smtp_default`).

Kept free of Airflow imports: the DAGs pass in their connection lookup and the
exception it raises for an undefined connection; anything with
host/port/login/password/schema/extra_dejson attributes works. Only "not defined"
falls back to NEWSMON_* settings: any other lookup error fails the task, naming
the connection.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from pipeline.config import ConfigError, Settings, load_settings
from pipeline.logs import set_client_log_level
from pipeline.mail import SmtpConfig

log = logging.getLogger(__name__)

ES_CONN_ID = "elasticsearch_default"
# Optional, privileged (manage index templates and indices): only `setup` uses it.
ES_SETUP_CONN_ID = "elasticsearch_setup"
SMTP_CONN_ID = "smtp_default"


def _lookup(lookup: Callable[[str], Any], conn_id: str, missing: type[Exception]) -> Any | None:
    """The connection, or None when it does not exist; one that exists but cannot be read is an error."""
    try:
        return lookup(conn_id)
    except missing:
        # Airflow reports a connection it cannot parse as "not defined"; its variable says otherwise.
        variable = f"AIRFLOW_CONN_{conn_id.upper()}"
        if os.environ.get(variable):
            raise ConfigError(f"connection {conn_id} cannot be read: {variable} is set but not accepted") from None
        log.info("connection %s not defined; using NEWSMON_* settings", conn_id)
        return None
    except Exception as exc:
        raise ConfigError(f"connection {conn_id} cannot be read: {type(exc).__name__}: {exc}") from exc


def es_overrides(conn: Any) -> dict[str, Any]:
    if not conn.host:
        raise ConfigError(f"connection {ES_CONN_ID} has no host")
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


def setup_settings_from_connections(lookup: Callable[[str], Any], missing: type[Exception]) -> Settings | None:
    """Settings for `setup` from the privileged connection, or None when it is not configured."""
    conn = _lookup(lookup, ES_SETUP_CONN_ID, missing)
    return load_settings(**es_overrides(conn)) if conn else None


def settings_from_connections(lookup: Callable[[str], Any], missing: type[Exception]) -> tuple[Settings, SmtpConfig]:
    """Settings with Elasticsearch and SMTP taken from connections when they exist.

    Args:
        lookup: the orchestrator's connection getter.
        missing: the exception it raises for a connection that is not defined.

    Raises:
        ConfigError: a connection cannot be read, or no Elasticsearch is configured at all
            (a worker never starts an embedded node of its own).
    """
    es_conn = _lookup(lookup, ES_CONN_ID, missing)
    settings = load_settings(**(es_overrides(es_conn) if es_conn else {}))
    # Tasks log through the orchestrator's handlers, not setup_logging: quiet the clients here.
    set_client_log_level(settings.client_log_level)
    if not settings.es_url:
        raise ConfigError(
            f"no Elasticsearch for this task: define the {ES_CONN_ID} connection or set NEWSMON_ES_URL "
            "(an embedded node is never started on a worker)"
        )
    smtp = SmtpConfig.from_settings(settings)
    smtp_conn = _lookup(lookup, SMTP_CONN_ID, missing)
    return settings, smtp_config(smtp_conn, smtp) if smtp_conn else smtp


def ops_settings(lookup: Callable[[str], Any], missing: type[Exception]) -> tuple[Settings, SmtpConfig]:
    """Settings for the failure mail: when the connections are what failed, NEWSMON_SMTP_* still reach ops."""
    try:
        return settings_from_connections(lookup, missing)
    except ConfigError as exc:
        log.warning("ops mail uses NEWSMON_SMTP_* settings: %s", exc)
        settings = load_settings()
        return settings, SmtpConfig.from_settings(settings)
