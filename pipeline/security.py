"""Roles and the pipeline's API key (Elasticsearch security).

The roles live in config/security/roles.json: `newsmon_pipeline` for the runtime,
`newsmon_setup` for `newsmon setup`, `newsmon_analyst` for Kibana users. The
pipeline's key is created with the `newsmon_pipeline` role descriptor, so it can
never do more than that role, whoever creates it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import yaml
from elasticsearch import Elasticsearch

from pipeline.config import Settings

log = logging.getLogger(__name__)

PIPELINE_ROLE = "newsmon_pipeline"


def load_roles(settings: Settings) -> dict[str, dict[str, Any]]:
    """Role name -> role body, index names moved to this deployment's prefix."""
    raw = json.loads(settings.config_file("security/roles.json").read_text(encoding="utf-8"))
    roles = {}
    for name, body in raw.items():
        for entry in body.get("indices", []):
            entry["names"] = [n.replace("newsmon", settings.index_prefix, 1) for n in entry["names"]]
        roles[name] = body
    return roles


def roles_yml(settings: Settings) -> str:
    """The roles in the form of Elasticsearch's file realm (config/roles.yml)."""
    roles = {name: {k: v for k, v in body.items() if k != "description"} for name, body in load_roles(settings).items()}
    return yaml.safe_dump(roles, sort_keys=False)


def put_roles(es: Elasticsearch, settings: Settings) -> list[str]:
    """Create or update every role (needs manage_security); returns their names."""
    roles = load_roles(settings)
    for name, body in roles.items():
        es.security.put_role(name=name, **body)
    log.info("roles installed: %s", ", ".join(roles))
    return list(roles)


def create_pipeline_key(es: Elasticsearch, settings: Settings, name: str) -> str:
    """A new API key limited to the pipeline role; earlier keys of the same name stop working.

    Returns the encoded key, as NEWSMON_ES_API_KEY (or the file of NEWSMON_ES_API_KEY_FILE) takes it.
    """
    role = dict(load_roles(settings)[PIPELINE_ROLE])
    role.pop("description", None)  # not part of an API key's role descriptor
    es.security.invalidate_api_key(name=name, owner=True)
    created = es.security.create_api_key(name=name, role_descriptors={PIPELINE_ROLE: role})
    return str(created["encoded"])


def write_secret(path: Path, value: str) -> None:
    """Write a secret readable by its owner and group only (the containers share group 0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    tmp.replace(path)
