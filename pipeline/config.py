"""Settings from the environment (prefix ``NEWSMON_``), each with a default.

Files that describe *what* to monitor (feeds, watchlist, alert rules, index
templates) live in the config directory; this module only says where it is.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import PositiveFloat, PositiveInt, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A setting or config file is wrong; the message names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEWSMON_", extra="ignore")

    # Folder with feeds.yaml, watchlist.yaml, alerts.yaml and templates/.
    config_dir: Path = PROJECT_ROOT / "config"
    # Where runtime state goes (embedded node, outbox, bench results).
    var_dir: Path = PROJECT_ROOT / "var"
    # jieba's dictionary cache (a process loads it instead of parsing the dictionary text).
    cache_dir: Path = PROJECT_ROOT / "var" / "cache"

    # An external cluster; unset means the embedded node started by `newsmon es start`.
    es_url: str | None = None
    es_api_key: SecretStr | None = None
    # A file holding the API key instead (written by `newsmon api-key create`); read on every connect.
    es_api_key_file: Path | None = None
    es_username: str | None = None
    es_password: SecretStr | None = None
    es_ca_certs: Path | None = None
    # Request timeout for Elasticsearch calls, seconds.
    es_timeout: float = 30.0
    # Embedded node: a zip or unpacked home to use instead of the Maven download.
    es_dist: Path | None = None
    # Embedded node: its name, so that one checkout can keep separate nodes (own data, port, state).
    es_instance: str = "default"
    # Embedded node heap (-Xms/-Xmx).
    es_heap: str = "512m"
    # Prefix of every index and alias this project owns.
    index_prefix: str = "newsmon"

    # Fetching.
    user_agent: str = "newsmon/0.1 (+https://github.com/newsmon/newsmon; export-control news monitor)"
    fetch_connect_timeout: float = 5.0
    fetch_read_timeout: float = 15.0
    # Wall-clock cap on one whole request, so a server trickling bytes cannot hold a slot.
    fetch_total_timeout: float = 30.0
    # Pages and feeds are cut at this many (decompressed) bytes.
    fetch_max_bytes: int = 5_000_000
    fetch_max_concurrency: int = 32
    fetch_per_host_concurrency: int = 2
    # Loopback and private addresses are refused unless this is true (tests need it).
    fetch_allow_private_hosts: bool = False
    # Ports fetched besides 80 and 443 (when private hosts are refused).
    fetch_allowed_ports: list[int] = []
    # Hosts fetched although their addresses are private (an intranet mirror), as written in URLs;
    # every other private address, a redirect to one included, stays refused.
    fetch_allowed_hosts: list[str] = []

    # Minutes between two polls of a feed whose feeds.yaml entry sets no interval_minutes.
    feed_interval_minutes: PositiveInt = 30

    # Extraction: CPU seconds one page may take before it is recorded as failed (timeout).
    extract_timeout: float = 10.0
    # Extraction: wall-clock seconds one page may take, whatever CPU it used (stalled): a backstop for a
    # worker blocked in a syscall or a deadlock, which never reaches the CPU limit. Generous, since a
    # normal page takes many times its CPU time on a busy machine; below claim_lease_seconds.
    extract_wall_timeout: float = 120.0
    # Retag: wall-clock seconds a worker may take to return one chunk's tags (RETAG_CHUNK articles) before
    # the retag stops with an error: a backstop for a worker blocked for good. Generous, as for extraction.
    retag_wall_timeout: PositiveFloat = 300.0
    # Worker processes for extract+tag; 0 means one per CPU.
    workers: int = 0
    # Seconds the extraction pool stays warm after a run, for the next run with the same pool settings
    # (pipeline.warmpool); above the schedule's interval, so scheduled runs never pay its start-up.
    # 0: each run starts and ends its own pool.
    pool_keep_warm_seconds: float = 900.0
    # Pages alive at once in a run (claimed, not yet built): memory grows with this, not the backlog.
    process_chunk: int = 16
    # Seconds a claim holds an entry; a run that crashed holding it frees it after this.
    claim_lease_seconds: float = 600.0
    # Attempts at an entry before a transient fetch failure is final (or an unfinished one is quarantined).
    entry_max_attempts: int = 3
    # A page whose extraction crashed or timed out on this many attempts is quarantined.
    quarantine_after: int = 2
    # Articles per bulk request.
    bulk_size: int = 200

    # Base URL of Kibana, for links in alert emails.
    kibana_url: str = "http://localhost:5601"

    # SMTP for alerts and ops mail; without a host, alerts need NEWSMON_ALERT_OUTBOX.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_security: Literal["none", "starttls", "ssl"] = "none"
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "newsmon@localhost"
    smtp_timeout: float = 20.0
    # A password over an unencrypted connection only when asked for (a relay on the same host).
    smtp_allow_plaintext_login: bool = False
    # Airflow task logs show the clients' per-request lines only when asked for.
    client_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    # Write alerts as .eml files here instead of mailing them (only used without an SMTP host).
    alert_outbox: Path | None = None
    # How long a sender's reservation of a (rule, article) pair holds; after it, another run resends.
    alert_lease_seconds: float = 300.0

    # Who is mailed when a DAG task fails.
    ops_email: str = "ops@localhost"
    # How often the newsmon_monitor DAG runs.
    monitor_every_minutes: int = 5
    # Seconds between two looks of newsmon_stream's trigger for due feeds (each feed keeps its interval).
    stream_poll_seconds: PositiveFloat = 10.0

    def config_file(self, name: str) -> Path:
        path = self.config_dir / name
        if not path.is_file():
            raise ConfigError(f"config file {path} not found (NEWSMON_CONFIG_DIR={self.config_dir})")
        return path

    def masked(self) -> dict[str, Any]:
        """Every setting, secrets shown as '***'."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "***"
            elif name == "es_url" and value:
                value = mask_url(value)
            elif isinstance(value, Path):
                value = str(value)
            shown[name] = value
        return shown


def mask_url(url: str) -> str:
    """The URL with the password of its user part replaced by '***', for logs and `config show`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; a bad value raises ConfigError naming it."""
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "NEWSMON_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise ConfigError(f"{name}: {first['msg']}") from exc
    log.debug("settings: %s", settings.masked())
    return settings


def is_root() -> bool:
    return os.geteuid() == 0
