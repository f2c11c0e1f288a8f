"""`newsmon setup`: index templates, indices and the articles alias; the one privileged step.

The runtime (CLI stages, DAG tasks) only reads and writes documents, so it can
run with an API key limited to its own indices. Everything that needs index
administration rights happens here, and is safe to repeat or to run twice at once.

Each template file carries a `version`; each index records, in its mapping's
`_meta`, the version and a digest of the template it was built from. When the
file changes, setup brings the existing data along:

- an additive change (new fields, new multi-fields) is put on the live index and
  every document is indexed again from its `_source`, so old data becomes
  searchable in the new fields;
- a breaking change (a field's type or analyzer, the analysis settings, the shard
  count) creates the next `…-articles-00000N`, copies every document, swaps the
  alias `…-articles` in one atomic step and deletes the old index.

Stored articles and entries in an older shape than the code writes are then rewritten
(pipeline.migrations), so readers see one shape.

The integ-test node has no reindex module (no `_reindex`, no `_update_by_query`),
so documents are copied with scroll-free point-in-time pages and the bulk API.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from elasticsearch import ApiError, AuthorizationException, BadRequestError, Elasticsearch, NotFoundError, helpers

from pipeline.config import Settings
from pipeline.es import Indices, connect, scan_index
from pipeline.logs import log_stage
from pipeline.migrations import MigrationError, migrate_stored

log = logging.getLogger(__name__)

TEMPLATES = ("articles", "feeds", "entries", "alerts")
META_KEY = "newsmon"
# Settings that cannot change on an open index: a change needs a new index.
STATIC_SETTINGS = ("number_of_shards", "analysis")


class Change(Enum):
    UNCHANGED = "unchanged"
    CREATED = "created"
    MAPPING_UPDATED = "mapping updated"  # additive: put on the live index, documents re-indexed
    REINDEXED = "reindexed"  # breaking: a new index behind the alias


class SetupError(Exception):
    """A template change that setup cannot apply; the message names the index and why."""


@dataclass(frozen=True)
class Template:
    name: str  # "articles", "feeds", …
    body: dict[str, Any]  # as sent to PUT _index_template, prefix applied, _meta stamped
    version: int
    digest: str

    @property
    def mappings(self) -> dict[str, Any]:
        return dict(self.body["template"]["mappings"])

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.body["template"].get("settings", {}))


@dataclass
class SetupReport:
    changes: dict[str, Change] = field(default_factory=dict)  # index or alias -> what happened
    copied: int = 0  # documents written again (re-indexed in place or copied to a new index)
    migrated: int = 0  # stored articles and entries rewritten in the current shape (pipeline.migrations)

    def as_counts(self) -> dict[str, Any]:
        changes = {name: change.value for name, change in self.changes.items()}
        return changes | {"copied": self.copied, "migrated": self.migrated}


def load_template(settings: Settings, name: str) -> Template:
    """The template file config/templates/NAME.json, ready for this prefix."""
    path = settings.config_file(f"templates/{name}.json")
    raw = json.loads(path.read_text(encoding="utf-8"))
    # The digest covers what decides the index's shape, not the prefix it is installed under.
    digest = hashlib.sha256(json.dumps(raw["template"], sort_keys=True).encode()).hexdigest()[:16]
    version = int(raw.get("version", 0))
    body = json.loads(json.dumps(raw))
    body["index_patterns"] = [p.replace("newsmon", settings.index_prefix, 1) for p in raw["index_patterns"]]
    body["template"]["mappings"]["_meta"] = {META_KEY: {"template": name, "version": version, "digest": digest}}
    return Template(name=name, body=body, version=version, digest=digest)


def index_meta(es: Elasticsearch, index: str) -> dict[str, Any]:
    """The template record an index was built from (empty for indices made before versioning)."""
    mapping = es.indices.get_mapping(index=index)
    (only,) = mapping.body.values()
    return dict(only["mappings"].get("_meta", {}).get(META_KEY, {}))


def write_index(es: Elasticsearch, alias: str) -> str | None:
    """The index the alias writes to, or None when the alias does not exist."""
    try:
        found = es.indices.get_alias(name=alias).body
    except NotFoundError:
        return None
    for index, entry in found.items():
        if entry["aliases"][alias].get("is_write_index", len(found) == 1):
            return str(index)
    raise SetupError(f"alias {alias} points at {sorted(found)} but none is its write index")


def pending(es: Elasticsearch, settings: Settings) -> list[str]:
    """What `setup` would change, read-only (needs only view_index_metadata); empty when up to date."""
    indices = Indices(settings.index_prefix)
    todo = []
    for name in TEMPLATES:
        template = load_template(settings, name)
        index = write_index(es, indices.articles) if name == "articles" else _existing(es, getattr(indices, name))
        if index is None:
            todo.append(f"{getattr(indices, name)}: missing")
        elif index_meta(es, index).get("digest") != template.digest:
            todo.append(f"{index}: built from another {name} template than version {template.version}")
    return todo


def _existing(es: Elasticsearch, index: str) -> str | None:
    return index if es.indices.exists(index=index) else None


def setup_indices(es: Elasticsearch, settings: Settings) -> SetupReport:
    """Install the templates, create missing indices, bring existing ones to the current templates.

    Raises:
        SetupError: a breaking change to a non-article index (feeds, entries, alerts keep
            pipeline state and have no alias to swap); the message names it.
    """
    indices = Indices(settings.index_prefix)
    report = SetupReport()
    try:
        for name in TEMPLATES:
            template = load_template(settings, name)
            es.indices.put_index_template(name=f"{settings.index_prefix}-{name}", **template.body)
            if name == "articles":
                _articles(es, indices, template, report)
            else:
                _state_index(es, getattr(indices, name), template, report)
        report.migrated = migrate_stored(es, indices)
    except MigrationError as exc:
        raise SetupError(f"{exc}; run `newsmon setup` again") from exc
    except AuthorizationException as exc:
        raise SetupError(
            f"Elasticsearch refused setup ({exc.message}): it needs a user or key with the newsmon_setup role "
            "of config/security/roles.json, or a superuser; the pipeline's own key cannot do it"
        ) from exc
    log_stage("setup", report.as_counts())
    return report


def scheduled_setup(runtime: Settings, privileged: Settings | None) -> dict[str, Any]:
    """The maintenance DAG's step: apply template changes when it holds privileged settings.

    Without them (the runtime's key may not manage indices) it only checks, and
    fails naming what is due, so that ops run `newsmon setup`.

    Raises:
        SetupError: templates changed and no privileged connection is configured.
    """
    if privileged is not None:
        return setup_indices(connect(privileged), privileged).as_counts()
    due = pending(connect(runtime), runtime)
    if due:
        raise SetupError(
            "index templates changed: run `newsmon setup`, or give the DAGs the elasticsearch_setup "
            "connection: " + "; ".join(due)
        )
    return {"pending": 0}


def _create(es: Elasticsearch, index: str, aliases: dict[str, Any] | None = None) -> bool:
    """Create from the template; False when another process created it first."""
    try:
        es.indices.create(index=index, aliases=aliases)
    except BadRequestError as exc:
        if exc.error == "resource_already_exists_exception":
            return False
        raise
    return True


def _state_index(es: Elasticsearch, index: str, template: Template, report: SetupReport) -> None:
    if not es.indices.exists(index=index):
        created = _create(es, index)
        report.changes[index] = Change.CREATED if created else Change.UNCHANGED
        return
    if index_meta(es, index).get("digest") == template.digest:
        report.changes[index] = Change.UNCHANGED
        return
    if not _additive(es, index, template):
        raise SetupError(
            f"{index}: config/templates/{template.name}.json changes an existing field or the index settings; "
            "this index keeps pipeline state and is only ever extended: add fields instead"
        )
    report.copied += _reindex_in_place(es, index)
    report.changes[index] = Change.MAPPING_UPDATED


def _articles(es: Elasticsearch, indices: Indices, template: Template, report: SetupReport) -> None:
    alias = indices.articles
    current = write_index(es, alias)
    if current is None:
        created = _create(es, indices.articles_first, {alias: {"is_write_index": True}})
        report.changes[alias] = Change.CREATED if created else Change.UNCHANGED
        return
    if index_meta(es, current).get("digest") == template.digest:
        report.changes[alias] = Change.UNCHANGED
        return
    if _additive(es, current, template):
        report.copied += _reindex_in_place(es, current)
        report.changes[alias] = Change.MAPPING_UPDATED
        return
    report.copied += _roll_over(es, alias, current, next_index(current))
    report.changes[alias] = Change.REINDEXED


def next_index(index: str) -> str:
    """newsmon-articles-000001 -> newsmon-articles-000002."""
    stem, _, number = index.rpartition("-")
    if not number.isdigit():
        raise SetupError(f"write index {index} does not end in a generation number")
    return f"{stem}-{int(number) + 1:0{len(number)}d}"


def _additive(es: Elasticsearch, index: str, template: Template) -> bool:
    """Put the template's mapping on the index when Elasticsearch accepts it as an extension.

    False, and nothing changed, when the static settings differ or the mapping
    changes an existing field (Elasticsearch refuses the merge with a 400).
    """
    live = es.indices.get_settings(index=index, flat_settings=True).body[index]["settings"]
    wanted = _flat({"index": {k: v for k, v in template.settings.items() if k in STATIC_SETTINGS}})
    have = {k: v for k, v in live.items() if any(k.startswith(f"index.{s}") for s in STATIC_SETTINGS)}
    if wanted != have:
        return False
    try:
        es.indices.put_mapping(index=index, body=template.mappings)
    except BadRequestError as exc:
        log.info("%s: mapping change is not additive (%s); a new index is needed", index, exc.message)
        return False
    dynamic = {k: v for k, v in template.settings.items() if k not in STATIC_SETTINGS}
    if dynamic:
        es.indices.put_settings(index=index, settings=dynamic)
    return True


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings in the form `flat_settings=true` returns (every leaf a string or list of strings)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= _flat(value, f"{path}.")
        elif isinstance(value, list):
            out[path] = [_setting_str(v) for v in value]
        else:
            out[path] = _setting_str(value)
    return out


def _setting_str(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _documents(es: Elasticsearch, index: str) -> Iterator[dict[str, Any]]:
    """Every document of one index with its version and sequence number, over a point in time."""
    es.indices.refresh(index=index)  # a point in time sees only what a refresh has published
    return scan_index(es, index, version=True, seq_no_primary_term=True)


def _bulk(es: Elasticsearch, actions: Iterator[dict[str, Any]]) -> int:
    """Run index actions; a 409 means a newer write won, which is what we want. Returns writes done."""
    written = 0
    for ok, item in helpers.streaming_bulk(es, actions, chunk_size=500, raise_on_error=False, max_retries=3):
        if ok:
            written += 1
        elif item["index"].get("status") != 409:
            raise SetupError(f"copying document {item['index'].get('_id')} failed: {item['index'].get('error')}")
    return written


def _reindex_in_place(es: Elasticsearch, index: str) -> int:
    """Index every document again from its _source, so fields mapped later are searchable on it.

    The sequence-number condition leaves alone a document the pipeline rewrote meanwhile
    (it was indexed under the new mapping already).
    """
    actions = (
        {
            "_index": index,
            "_id": hit["_id"],
            "_source": hit["_source"],
            "if_seq_no": hit["_seq_no"],
            "if_primary_term": hit["_primary_term"],
        }
        for hit in _documents(es, index)
    )
    written = _bulk(es, actions)
    es.indices.refresh(index=index)
    return written


def _copy(es: Elasticsearch, source: str, target: str) -> int:
    """Copy documents keeping their versions: a copy never overwrites a newer write to the target."""
    actions = (
        {
            "_index": target,
            "_id": hit["_id"],
            "_source": hit["_source"],
            "version": hit["_version"],
            # Strictly newer only: a resumed or second copy skips what is already there.
            "version_type": "external",
        }
        for hit in _documents(es, source)
    )
    return _bulk(es, actions)


def _roll_over(es: Elasticsearch, alias: str, old: str, new: str) -> int:
    """Build `new` from the template, fill it from `old`, point the alias at it, delete `old`.

    Readers and writers use the alias throughout and always see one index.
    Documents written to `old` while the first copy runs are caught by the
    second copy, after the swap and a write block on `old`; versions decide
    between a copy and a newer write, so nothing is lost or doubled. A run that
    stopped half-way resumes here: `new` already exists.
    """
    _create(es, new)
    copied = _copy(es, old, new)
    es.indices.refresh(index=new)
    es.indices.update_aliases(
        actions=[
            {"add": {"index": new, "alias": alias, "is_write_index": True}},
            {"remove": {"index": old, "alias": alias}},
        ]
    )
    # The block waits for writes in flight to `old`; after it, nothing more can reach `old`.
    es.indices.add_block(index=old, block="write")
    copied += _copy(es, old, new)  # what reached `old` before the swap
    es.indices.refresh(index=new)
    old_count = int(es.count(index=old)["count"])
    missing = old_count - _present(es, old, new)
    if missing:
        raise SetupError(f"{missing} documents of {old} are not in {new}; {old} is kept, run setup again")
    try:
        es.indices.delete(index=old)
    except ApiError as exc:
        if exc.status_code != 404:  # a concurrent setup deleted it first
            raise
    log.info("%s now points at %s (%d documents copied from %s)", alias, new, copied, old)
    return copied


def _present(es: Elasticsearch, old: str, new: str) -> int:
    """How many ids of `old` exist in `new`."""
    ids = [hit["_id"] for hit in _documents(es, old)]
    found = 0
    for start in range(0, len(ids), 1000):
        docs = es.mget(index=new, ids=ids[start : start + 1000], source=False)["docs"]
        found += sum(1 for d in docs if d.get("found"))
    return found
