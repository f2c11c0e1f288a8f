"""Load and check `config/watchlist.yaml`: entities, watch terms, topic rules."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import ConfigError
from pipeline.salience import Condition, Near, Placed, Placement, Repeated, Scope
from pipeline.text import normalise

ENTITY_TYPES = ("person", "organisation", "place", "material", "policy", "weapon")
LANGUAGES = ("zh-Hans", "zh-Hant", "ja", "en")
# Bump when tagging logic changes, so `newsmon retag` rewrites every document.
TAGGER_REVISION = "9"
# Tagging also reads this file beside the watchlist: editing it changes the version too.
DISCOVERY_FILE = "discovery.yaml"


@dataclass(frozen=True)
class Entry:
    id: str
    type: str  # an entity type, or "term" for watch terms
    label: str
    groups: tuple[str, ...]
    watch: bool
    names: tuple[str, ...]


@dataclass(frozen=True)
class Clause:
    name: str  # what `near` conditions of other clauses refer to
    targets: frozenset[str]  # group names and entry ids
    min_mentions: int
    # Salience: when given, at least one entry must hold, each entry all of its conditions.
    any_of: tuple[tuple[Condition, ...], ...] = ()


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    weight: float
    clauses: tuple[Clause, ...]


@dataclass(frozen=True)
class Watchlist:
    entries: tuple[Entry, ...]
    rules: tuple[Rule, ...]
    threshold: float
    version: str

    def by_id(self) -> dict[str, Entry]:
        return {e.id: e for e in self.entries}


def load_watchlist(path: Path) -> Watchlist:
    raw_bytes = path.read_bytes()
    try:
        # libyaml's safe loader: the same documents as yaml.safe_load, 10x faster (every run and tagger reads it).
        raw = yaml.load(raw_bytes, Loader=yaml.CSafeLoader) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    located = [("entities", i, item) for i, item in enumerate(raw.get("entities") or [])]
    located += [("terms", i, item) for i, item in enumerate(raw.get("terms") or [])]
    entries = [_entry(path, item, i, kind=kind) for kind, i, item in located]
    ids = [e.id for e in entries]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"{path}: duplicate ids {duplicates}")
    _check_names_unique(path, entries, [f"{kind}[{i}]" for kind, i, _ in located])
    known = set(ids) | {g for e in entries for g in e.groups}
    rules = tuple(_rule(path, item, i, known) for i, item in enumerate(raw.get("rules") or []))
    threshold = float((raw.get("relevance") or {}).get("threshold", 1.0))
    discovery = path.parent / DISCOVERY_FILE
    discovery_bytes = discovery.read_bytes() if discovery.is_file() else b""
    version = hashlib.sha256(raw_bytes + discovery_bytes + TAGGER_REVISION.encode()).hexdigest()[:16]
    return Watchlist(entries=tuple(entries), rules=rules, threshold=threshold, version=version)


def _entry(path: Path, item: Any, index: int, kind: str) -> Entry:
    where = f"{path}: {kind}[{index}]"
    if not isinstance(item, dict) or not item.get("id"):
        raise ConfigError(f"{where}: needs an `id`")
    where = f"{path}: {kind}[{index}] ({item['id']})"
    entry_type = item.get("type", "term") if kind == "entities" else "term"
    if kind == "entities" and entry_type not in ENTITY_TYPES:
        raise ConfigError(f"{where}: type must be one of {', '.join(ENTITY_TYPES)}, not {entry_type!r}")
    names_by_lang = item.get("names") or {}
    if not isinstance(names_by_lang, dict):
        raise ConfigError(f"{where}: `names` must map languages to lists")
    unknown = set(names_by_lang) - set(LANGUAGES)
    if unknown:
        raise ConfigError(f"{where}: unknown languages {sorted(unknown)}; use {', '.join(LANGUAGES)}")
    names: list[str] = []
    for values in names_by_lang.values():
        names += [str(v) for v in (values or [])]
    if not names:
        raise ConfigError(f"{where}: has no names")
    return Entry(
        id=str(item["id"]),
        type=entry_type,
        label=str(item.get("label") or names[0]),
        groups=tuple(item.get("groups") or ()),
        watch=bool(item.get("watch", kind == "terms")),
        names=tuple(dict.fromkeys(names)),
    )


def _check_names_unique(path: Path, entries: list[Entry], places: list[str]) -> None:
    """Each normalised name may belong to one entry: a shared one would tag only one of them."""
    owners: dict[str, str] = {}
    for entry, place in zip(entries, places, strict=True):
        for name in entry.names:
            owner = owners.setdefault(normalise(name), entry.id)
            if owner != entry.id:
                raise ConfigError(f"{path}: {place} ({entry.id}): name {name!r} is already a name of {owner}")


def _rule(path: Path, item: Any, index: int, known: set[str]) -> Rule:
    where = f"{path}: rules[{index}]"
    if not isinstance(item, dict) or not item.get("id") or not item.get("all"):
        raise ConfigError(f"{where}: needs an `id` and a non-empty `all` list")
    clauses = []
    where = f"{where} ({item['id']})"
    for position, clause in enumerate(item["all"]):
        if not isinstance(clause, dict):
            raise ConfigError(f"{where}: each `all` clause maps `groups`/`ids` to lists")
        targets = frozenset(clause.get("groups", [])) | frozenset(clause.get("ids", []))
        missing = targets - known
        if missing:
            raise ConfigError(f"{where}: unknown groups or ids {sorted(missing)}")
        clauses.append(
            Clause(
                name=str(clause.get("name", position)),
                targets=targets,
                min_mentions=int(clause.get("min_mentions", 1)),
                any_of=tuple(_condition(where, c) for c in clause.get("any") or ()),
            )
        )
    names = {c.name for c in clauses}
    for clause in clauses:
        for condition in (atom for conditions in clause.any_of for atom in conditions):
            if isinstance(condition, Near) and condition.clause not in names - {clause.name}:
                raise ConfigError(f"{where}: clause {clause.name!r} is `near` unknown clause {condition.clause!r}")
    return Rule(
        id=str(item["id"]),
        description=str(item.get("description", "")),
        weight=float(item.get("weight", 1.0)),
        clauses=tuple(clauses),
    )


def _condition(where: str, raw: Any) -> tuple[Condition, ...]:
    """One salience condition: any of {near: CLAUSE, within: sentence|paragraph|N},
    {in: title|lead} and {min_mentions: N}; several keys in one mapping must all hold."""
    if not isinstance(raw, dict) or not raw or set(raw) - {"near", "within", "in", "min_mentions"}:
        raise ConfigError(
            f"{where}: each `any` condition maps near/within, in (title|lead) and min_mentions, not {raw!r}"
        )
    atoms: list[Condition] = []
    if "near" in raw:
        within = raw.get("within", "sentence")
        if isinstance(within, int):
            atoms.append(Near(clause=str(raw["near"]), scope=Scope.CHARS, chars=within))
        elif within in (Scope.SENTENCE, Scope.PARAGRAPH):
            atoms.append(Near(clause=str(raw["near"]), scope=Scope(within)))
        else:
            raise ConfigError(f"{where}: `within` must be sentence, paragraph or a character count, not {within!r}")
    if "in" in raw:
        if raw["in"] not in (Placement.TITLE, Placement.LEAD):
            raise ConfigError(f"{where}: `in` must be title or lead, not {raw['in']!r}")
        atoms.append(Placed(Placement(raw["in"])))
    if "min_mentions" in raw:
        if not isinstance(raw["min_mentions"], int) or raw["min_mentions"] < 1:
            raise ConfigError(f"{where}: `min_mentions` must be a positive number, not {raw['min_mentions']!r}")
        atoms.append(Repeated(raw["min_mentions"]))
    if not atoms:
        raise ConfigError(f"{where}: `within` needs `near`")
    return tuple(atoms)
