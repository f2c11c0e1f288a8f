"""Alert stage: choose and render the new matching articles of each rule.

Each (rule, article) pair goes out exactly once: `pipeline.delivery` reserves it
before sending and records it after, so overlapping or crashed runs neither
double nor lose an alert. Seeds and articles older than the rule's maximum age
are never alerted.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from email.message import EmailMessage
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from elasticsearch import Elasticsearch

from pipeline.config import ConfigError, Settings
from pipeline.delivery import Article, Compose, Delivery, Ledger, PairState, deliver_batch
from pipeline.es import Indices
from pipeline.logs import log_stage
from pipeline.mail import SmtpConfig, Story, build_message, check_transport, deliver, render
from pipeline.models import Origin
from pipeline.text import normalise
from pipeline.watchlist import Watchlist

log = logging.getLogger(__name__)

NEAR_DUPLICATE = 0.6  # Jaccard similarity of body shingles above which two articles are one story
SHINGLE = 5
CANDIDATE_LIMIT = 500
# An article built before a run started can become searchable after the run looked: the next
# run looks back this far before the last run's start, so it is never missed.
CHECKPOINT_MARGIN = timedelta(minutes=15)
SIMILAR_PER_ARTICLE = 10  # articles fetched as possible near-duplicates of each pending one


class AlertMode(StrEnum):
    IMMEDIATE = "immediate"  # every run mails what is new
    DIGEST = "digest"  # once a day, at digest_at


@dataclass(frozen=True)
class AlertRule:
    name: str
    recipients: tuple[str, ...]
    relevance_rules: tuple[str, ...]
    require_any: tuple[str, ...]
    mode: AlertMode
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
        try:
            mode = AlertMode(item.get("mode", AlertMode.IMMEDIATE))
        except ValueError:
            raise ConfigError(f"{where}: mode must be immediate or digest, not {item['mode']!r}") from None
        try:
            zone = ZoneInfo(item.get("timezone", "UTC"))
            digest_at = time.fromisoformat(str(item["digest_at"])) if mode is AlertMode.DIGEST else None
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


def candidates(
    es: Elasticsearch, indices: Indices, rule: AlertRule, now: datetime, since: datetime | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Relevant feed articles for the rule, young enough, indexed `since` (when given): the newest
    CANDIDATE_LIMIT, oldest first. `since` keeps a run's work to what was indexed since the last."""
    filters: list[dict[str, Any]] = [
        {"term": {"source.kind": Origin.FEED.value}},
        {"term": {"relevance.relevant": True}},
        {"range": {"published_at": {"gte": (now - rule.max_age).isoformat()}}},
    ]
    if since is not None:
        filters.append({"range": {"indexed_at": {"gte": since.isoformat()}}})
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


def shingles(text: str) -> set[int]:
    norm = re.sub(r"\s+", "", normalise(text))
    return {hash(norm[i : i + SHINGLE]) for i in range(max(1, len(norm) - SHINGLE + 1))}


def _marks(doc: dict[str, Any]) -> set[int]:
    return shingles(doc.get("body") or doc.get("title") or "")


def _same_story(a: set[int], b: set[int]) -> bool:
    return len(a & b) / max(1, len(a | b)) >= NEAR_DUPLICATE


def _story_id(doc: dict[str, Any]) -> str | None:
    return (doc.get("story") or {}).get("id")


def group_stories(found: list[tuple[str, dict[str, Any]]]) -> list[Story]:
    """One item per story: the index's story id (any script or language), or near-identical bodies.

    The earliest article leads the item; the others are listed as also reported by.
    """
    stories: list[tuple[Story, set[int]]] = []
    for doc_id, doc in found:
        marks = _marks(doc)
        story_id = _story_id(doc)
        for story, story_marks in stories:
            if (story_id and story_id == _story_id(story.doc)) or _same_story(marks, story_marks):
                story.also.append(doc)
                break
        else:
            stories.append((Story(doc_id, doc), marks))
    return [s for s, _ in stories]


def split_repeats(
    es: Elasticsearch,
    indices: Indices,
    ledger: Ledger,
    rule: AlertRule,
    pending: list[tuple[str, dict[str, Any]]],
    now: datetime,
) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """Pending articles that tell a story this rule already sent (another outlet, a day later) are repeats.

    The earlier articles compared are found through the index from the pending ones (the same
    story id, or the most similar text), so the cost follows the new articles, not the alerts sent.
    """
    if not pending:
        return pending, []
    earlier_ids = _related(es, indices, rule, pending, now)
    sent = [i for i, pair in ledger.lookup(rule.name, earlier_ids).items() if pair.state is PairState.SENT]
    if not sent:
        return pending, []
    sent_docs = [d["_source"] for d in es.mget(index=indices.articles, ids=sent)["docs"] if d.get("found")]
    earlier = [_marks(d) for d in sent_docs]
    sent_stories = {_story_id(d) for d in sent_docs} - {None}
    fresh, repeats = [], []
    for doc_id, doc in pending:
        # Another language's report of a story already sent is a repeat too.
        if _story_id(doc) in sent_stories or any(_same_story(_marks(doc), e) for e in earlier):
            repeats.append(doc_id)
        else:
            fresh.append((doc_id, doc))
    return fresh, repeats


def _related(
    es: Elasticsearch, indices: Indices, rule: AlertRule, pending: list[tuple[str, dict[str, Any]]], now: datetime
) -> list[str]:
    """Ids of the rule's young articles in the pending ones' stories or most like their text."""
    ids = [doc_id for doc_id, _ in pending]
    stories = sorted({s for _, doc in pending if (s := _story_id(doc))})
    young = {"range": {"published_at": {"gte": (now - rule.max_age).isoformat()}}}
    like = [{"_index": indices.articles, "_id": doc_id} for doc_id in ids]
    should: list[dict[str, Any]] = [
        {"more_like_this": {"fields": ["body"], "like": like, "min_term_freq": 1, "max_query_terms": 50}}
    ]
    if stories:
        should.append({"terms": {"story.id": stories}})
    hits = es.search(
        index=indices.articles,
        size=min(CANDIDATE_LIMIT, SIMILAR_PER_ARTICLE * len(ids) + len(stories)),
        source=False,
        query={
            "bool": {
                "filter": [young],
                "should": should,
                "minimum_should_match": 1,
                "must_not": [{"ids": {"values": ids}}],
            }
        },
    )["hits"]["hits"]
    return [h["_id"] for h in hits]


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
    held: int = 0  # articles whose pair another sender holds (its lease still runs)
    where: str | None = None
    error: str | None = None


class Alerter:
    """Selects and renders alerts for every configured rule; `pipeline.delivery` sends and records them."""

    def __init__(
        self, settings: Settings, es: Elasticsearch, indices: Indices, watchlist: Watchlist, smtp: SmtpConfig
    ) -> None:
        self.settings, self.es, self.indices, self.smtp = settings, es, indices, smtp
        self.rules = load_rules(settings.config_file("alerts.yaml"), watchlist)
        self.labels = {e.id: e.label for e in watchlist.entries}
        self.term_names = {e.id: list(e.names) for e in watchlist.entries}
        self.ledger = Ledger(es, indices, timedelta(seconds=settings.alert_lease_seconds))

    def rule(self, name: str) -> AlertRule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise ConfigError(f"no alert rule named {name!r} in alerts.yaml")

    def preview(self, rule: AlertRule, now: datetime) -> tuple[list[Story], str | None]:
        """What the rule would send now (digests: what the next one holds); sends nothing."""
        found = self._found(rule, now)
        pairs = self.ledger.lookup(rule.name, [i for i, _ in found])
        stories = group_stories([a for a in found if a[0] not in pairs or pairs[a[0]].state is PairState.RESERVED])
        return stories, self._render(rule, stories).text if stories else None

    def run(self, now: datetime | None = None) -> list[AlertOutcome]:
        now = now or datetime.now(UTC)
        if self.rules:
            check_transport(self.smtp, self.settings)
        outcomes = [self._run_rule(rule, now) for rule in self.rules]
        log_stage(
            "alert",
            {
                "rules": len(outcomes),
                "matched": sum(o.matches for o in outcomes),
                "alerted": sum(o.articles for o in outcomes),
                "emails": sum(o.sent for o in outcomes),
                "held": sum(o.held for o in outcomes),
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

    def _compose(self, rule: AlertRule) -> Compose:
        def compose(articles: list[Article], message_id: str) -> EmailMessage:
            rendered = self._render(rule, group_stories(articles))
            return build_message(rendered, self.smtp.sender, list(rule.recipients), message_id)

        return compose

    def _send(self, message: EmailMessage) -> str:
        return deliver(message, self.smtp, self.settings.alert_outbox)

    def _run_rule(self, rule: AlertRule, now: datetime) -> AlertOutcome:
        outcome = AlertOutcome(rule.name)
        period = None
        if rule.mode is AlertMode.DIGEST:
            period = digest_boundary(rule, now).isoformat()
            state_id = f"digest:{rule.name}"
            state = self.es.options(ignore_status=404).get(index=self.indices.alerts, id=state_id)
            if not state.get("found"):
                # First run: the first digest goes out at the next boundary.
                self._record_period(rule, period, now)
                return outcome
            if state["_source"]["period"] >= period:
                return outcome
        started = datetime.now(UTC)  # the clock articles' indexed_at is read on, whatever `now` says
        found = self._found(rule, now)
        pairs = self.ledger.lookup(rule.name, [i for i, _ in found])
        fresh = [a for a in found if a[0] not in pairs]
        due = [a for a in found if a[0] in pairs and pairs[a[0]].expired(now)]
        outcome.held = sum(1 for p in pairs.values() if p.state is PairState.RESERVED and not p.expired(now))
        outcome.matches = len(fresh) + len(due)
        fresh, repeats = split_repeats(self.es, self.indices, self.ledger, rule, fresh, now)
        # A repeat is recorded as handled, so the story reaches recipients once, not once per outlet.
        self.ledger.record_repeats(rule.name, repeats, period, now)
        for batch in self.ledger.batches(rule.name, fresh, due, pairs, period):
            result = deliver_batch(
                self.ledger, rule.name, list(rule.recipients), batch, period, now, self._compose(rule), self._send
            )
            if result.outcome is Delivery.FAILED:
                outcome.error = result.error
                log.warning("alert %s not sent: %s", rule.name, result.error)
                return outcome  # released: the next run sends these again
            outcome.held += result.held
            if result.outcome is Delivery.SENT:
                outcome.sent += 1
                outcome.articles += result.articles
                outcome.where = result.where
        if period:
            self._record_period(rule, period, now)
        if not outcome.held:  # a holder may still release its pairs: until then, they stay to be read again
            self._record_checkpoint(rule, started)
        return outcome

    def _found(self, rule: AlertRule, now: datetime) -> list[tuple[str, dict[str, Any]]]:
        """The candidates indexed since the rule's last completed run, and those a crashed sender
        left reserved past their lease (older, perhaps, than that run)."""
        state = self.es.options(ignore_status=404).get(index=self.indices.alerts, id=f"checkpoint:{rule.name}")
        since = datetime.fromisoformat(state["_source"]["sent_at"]) - CHECKPOINT_MARGIN if state.get("found") else None
        found = candidates(self.es, self.indices, rule, now, since)
        known = {doc_id for doc_id, _ in found}
        orphans = [i for i in self.ledger.expired(rule.name, now) if i not in known]
        if not orphans:
            return found
        docs = self.es.mget(index=self.indices.articles, ids=orphans)["docs"]
        return [(d["_id"], d["_source"]) for d in docs if d.get("found")] + found

    def _record_checkpoint(self, rule: AlertRule, started: datetime) -> None:
        self.es.index(
            index=self.indices.alerts,
            id=f"checkpoint:{rule.name}",
            document={"kind": "checkpoint", "rule": rule.name, "sent_at": started.isoformat()},
        )

    def _record_period(self, rule: AlertRule, period: str, now: datetime) -> None:
        self.es.index(
            index=self.indices.alerts,
            id=f"digest:{rule.name}",
            document={"kind": "digest_state", "rule": rule.name, "period": period, "sent_at": now.isoformat()},
            refresh=True,
        )
