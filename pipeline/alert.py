"""Alert stage: email new matching articles, exactly once per (rule, article).

A pair is recorded in Elasticsearch only after the mail server accepted the
message, so a refused or failed send is retried by the next run, and a
re-run finds everything recorded and sends nothing. Seeds and articles older
than the rule's maximum age are never alerted.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from elasticsearch import Elasticsearch, helpers

from pipeline.config import ConfigError, Settings
from pipeline.es import Indices
from pipeline.logs import log_stage
from pipeline.mail import DeliveryError, SmtpConfig, Story, build_message, deliver, render
from pipeline.text import normalise
from pipeline.watchlist import Watchlist

log = logging.getLogger(__name__)

NEAR_DUPLICATE = 0.6  # Jaccard similarity of body shingles above which two articles are one story
SHINGLE = 5
CANDIDATE_LIMIT = 500


@dataclass(frozen=True)
class AlertRule:
    name: str
    recipients: tuple[str, ...]
    relevance_rules: tuple[str, ...]
    require_any: tuple[str, ...]
    mode: str  # immediate | digest
    timezone: ZoneInfo
    max_age: timedelta
    digest_at: time | None = None


def load_rules(path: Path, watchlist: Watchlist) -> list[AlertRule]:
    """Read alerts.yaml; a wrong rule raises ConfigError naming it."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    known_rules = {r.id for r in watchlist.rules}
    known_ids = set(watchlist.by_id())
    rules = []
    for i, item in enumerate(raw.get("rules") or []):
        where = f"{path}: rules[{i}]" + (f" ({item.get('name')})" if isinstance(item, dict) else "")
        if not isinstance(item, dict) or not item.get("name") or not item.get("recipients"):
            raise ConfigError(f"{where}: needs a name and recipients")
        condition = item.get("condition") or {}
        relevance_rules = tuple(condition.get("relevance_rules") or ())
        require_any = tuple(condition.get("require_any") or ())
        if set(relevance_rules) - known_rules:
            raise ConfigError(f"{where}: unknown relevance rules {sorted(set(relevance_rules) - known_rules)}")
        if set(require_any) - known_ids:
            raise ConfigError(f"{where}: unknown entity ids or terms {sorted(set(require_any) - known_ids)}")
        mode = item.get("mode", "immediate")
        if mode not in {"immediate", "digest"}:
            raise ConfigError(f"{where}: mode must be immediate or digest, not {mode!r}")
        try:
            zone = ZoneInfo(item.get("timezone", "UTC"))
            digest_at = time.fromisoformat(str(item["digest_at"])) if mode == "digest" else None
        except (ZoneInfoNotFoundError, ValueError, KeyError) as exc:
            raise ConfigError(f"{where}: bad timezone or digest_at ({exc})") from exc
        rules.append(
            AlertRule(
                name=str(item["name"]),
                recipients=tuple(item["recipients"]),
                relevance_rules=relevance_rules,
                require_any=require_any,
                mode=mode,
                timezone=zone,
                max_age=timedelta(days=float(item.get("max_age_days", 3))),
                digest_at=digest_at,
            )
        )
    return rules


def candidates(es: Elasticsearch, indices: Indices, rule: AlertRule, now: datetime) -> list[tuple[str, dict[str, Any]]]:
    """Relevant feed articles for the rule, young enough: the newest CANDIDATE_LIMIT, oldest first."""
    filters: list[dict[str, Any]] = [
        {"term": {"source.kind": "feed"}},
        {"term": {"relevance.relevant": True}},
        {"range": {"published_at": {"gte": (now - rule.max_age).isoformat()}}},
    ]
    if rule.relevance_rules:
        filters.append({"terms": {"relevance.matched_rules": list(rule.relevance_rules)}})
    if rule.require_any:
        filters.append(
            {
                "bool": {
                    "should": [
                        {"terms": {"entity_ids": list(rule.require_any)}},
                        {"terms": {"watch_terms": list(rule.require_any)}},
                    ],
                    "minimum_should_match": 1,
                }
            }
        )
    response = es.search(
        index=indices.articles,
        size=CANDIDATE_LIMIT,
        query={"bool": {"filter": filters}},
        # Newest first, so a backlog of older matches never hides today's news.
        sort=[{"published_at": "desc"}, {"url": "asc"}],
    )
    return [(h["_id"], h["_source"]) for h in reversed(response["hits"]["hits"])]


def record_id(rule: AlertRule, article_id: str) -> str:
    return f"{rule.name}:{article_id}"


def unsent(
    es: Elasticsearch, indices: Indices, rule: AlertRule, found: list[tuple[str, dict[str, Any]]]
) -> list[tuple[str, dict[str, Any]]]:
    if not found:
        return []
    docs = es.mget(index=indices.alerts, ids=[record_id(rule, i) for i, _ in found], source=False)["docs"]
    sent = {d["_id"] for d in docs if d.get("found")}
    return [(i, d) for i, d in found if record_id(rule, i) not in sent]


def shingles(text: str) -> set[int]:
    norm = re.sub(r"\s+", "", normalise(text))
    return {hash(norm[i : i + SHINGLE]) for i in range(max(1, len(norm) - SHINGLE + 1))}


def _marks(doc: dict[str, Any]) -> set[int]:
    return shingles(doc.get("body") or doc.get("title") or "")


def _same_story(a: set[int], b: set[int]) -> bool:
    return len(a & b) / max(1, len(a | b)) >= NEAR_DUPLICATE


def group_stories(found: list[tuple[str, dict[str, Any]]]) -> list[Story]:
    """One story per group of near-identical bodies; the earliest article leads it."""
    stories: list[tuple[Story, set[int]]] = []
    for doc_id, doc in found:
        marks = _marks(doc)
        for story, story_marks in stories:
            if _same_story(marks, story_marks):
                story.also.append(doc)
                break
        else:
            stories.append((Story(doc_id, doc), marks))
    return [s for s, _ in stories]


def split_repeats(
    es: Elasticsearch, indices: Indices, rule: AlertRule, pending: list[tuple[str, dict[str, Any]]], now: datetime
) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """Pending articles that tell a story this rule already sent (another outlet, a day later) are repeats."""
    if not pending:
        return pending, []
    sent = es.search(
        index=indices.alerts,
        size=CANDIDATE_LIMIT,
        source_includes=["article_id"],
        query={
            "bool": {
                "filter": [
                    {"term": {"kind": "sent"}},
                    {"term": {"rule": rule.name}},
                    {"range": {"sent_at": {"gte": (now - rule.max_age).isoformat()}}},
                ]
            }
        },
    )["hits"]["hits"]
    ids = [h["_source"]["article_id"] for h in sent]
    if not ids:
        return pending, []
    earlier = [_marks(d["_source"]) for d in es.mget(index=indices.articles, ids=ids)["docs"] if d.get("found")]
    fresh, repeats = [], []
    for doc_id, doc in pending:
        if any(_same_story(_marks(doc), e) for e in earlier):
            repeats.append(doc_id)
        else:
            fresh.append((doc_id, doc))
    return fresh, repeats


def digest_boundary(rule: AlertRule, now: datetime) -> datetime:
    """The latest daily digest time at or before now, in the rule's zone."""
    assert rule.digest_at is not None
    local = now.astimezone(rule.timezone)
    boundary = datetime.combine(local.date(), rule.digest_at, tzinfo=rule.timezone)
    return boundary if boundary <= local else boundary - timedelta(days=1)


@dataclass
class AlertOutcome:
    rule: str
    matches: int = 0
    sent: int = 0  # emails
    articles: int = 0
    where: str | None = None
    error: str | None = None


class Alerter:
    """Selects, renders, delivers and records alerts for every configured rule."""

    def __init__(
        self, settings: Settings, es: Elasticsearch, indices: Indices, watchlist: Watchlist, smtp: SmtpConfig
    ) -> None:
        self.settings, self.es, self.indices, self.smtp = settings, es, indices, smtp
        self.rules = load_rules(settings.config_file("alerts.yaml"), watchlist)
        self.labels = {e.id: e.label for e in watchlist.entries}
        self.term_names = {e.id: list(e.names) for e in watchlist.entries}

    def rule(self, name: str) -> AlertRule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise ConfigError(f"no alert rule named {name!r} in alerts.yaml")

    def preview(self, rule: AlertRule, now: datetime) -> tuple[list[Story], str | None]:
        """What the rule would send now (digests: what the next one holds); sends nothing."""
        stories = group_stories(unsent(self.es, self.indices, rule, candidates(self.es, self.indices, rule, now)))
        return stories, self._render(rule, stories).text if stories else None

    def run(self, now: datetime | None = None) -> list[AlertOutcome]:
        now = now or datetime.now(UTC)
        outcomes = [self._run_rule(rule, now) for rule in self.rules]
        log_stage(
            "alert",
            {
                "rules": len(outcomes),
                "matched": sum(o.matches for o in outcomes),
                "alerted": sum(o.articles for o in outcomes),
                "emails": sum(o.sent for o in outcomes),
                "failed": sum(1 for o in outcomes if o.error),
            },
        )
        return outcomes

    def _render(self, rule: AlertRule, stories: list[Story]) -> Any:
        return render(
            rule.name,
            stories,
            self.labels,
            self.term_names,
            rule.timezone,
            self.settings.kibana_url,
            self.indices.articles,
        )

    def _run_rule(self, rule: AlertRule, now: datetime) -> AlertOutcome:
        outcome = AlertOutcome(rule.name)
        period = None
        if rule.mode == "digest":
            period = digest_boundary(rule, now).isoformat()
            state_id = f"digest:{rule.name}"
            state = self.es.options(ignore_status=404).get(index=self.indices.alerts, id=state_id)
            if not state.get("found"):
                # First run: the first digest goes out at the next boundary.
                self._record([{"_id": state_id, "kind": "digest_state", "rule": rule.name, "period": period}], now)
                return outcome
            if state["_source"]["period"] >= period:
                return outcome
        pending = unsent(self.es, self.indices, rule, candidates(self.es, self.indices, rule, now))
        outcome.matches = len(pending)
        pending, repeats = split_repeats(self.es, self.indices, rule, pending, now)
        # A repeat is recorded as handled, so the story reaches recipients once, not once per outlet.
        records: list[dict[str, Any]] = [
            {
                "_id": record_id(rule, doc_id),
                "kind": "repeat",
                "rule": rule.name,
                "article_id": doc_id,
                "period": period,
            }
            for doc_id in repeats
        ]
        if pending:
            stories = group_stories(pending)
            message = build_message(self._render(rule, stories), self.smtp.sender, list(rule.recipients))
            try:
                outcome.where = deliver(message, self.smtp, self.settings.outbox_dir)
            except DeliveryError as exc:
                outcome.error = str(exc)
                log.warning("alert %s not sent: %s", rule.name, exc)
                return outcome  # nothing recorded: the next run sends these again
            outcome.sent, outcome.articles = 1, len(pending)
            records += [
                {
                    "_id": record_id(rule, doc_id),
                    "kind": "sent",
                    "rule": rule.name,
                    "article_id": doc_id,
                    "message_id": message["Message-ID"],
                    "recipients": list(rule.recipients),
                    "period": period,
                }
                for doc_id, _ in pending
            ]
        if period:
            records.append({"_id": f"digest:{rule.name}", "kind": "digest_state", "rule": rule.name, "period": period})
        self._record(records, now)
        return outcome

    def _record(self, records: list[dict[str, Any]], now: datetime) -> None:
        actions = (
            {"_index": self.indices.alerts, "_id": r.pop("_id"), "_source": {**r, "sent_at": now.isoformat()}}
            for r in records
        )
        helpers.bulk(self.es, actions, refresh=True)
