"""Alert stage: choose and render the new matching articles of each rule.

Each (rule, article) pair goes out exactly once: `pipeline.delivery` reserves it
before sending and records it after, so overlapping or crashed runs neither
double nor lose an alert. A new report of a story already mailed goes out once as
new coverage of it (`pipeline.repeats`), not as a new item. Seeds and articles older
than the rule's maximum age are never alerted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
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
from pipeline.mail import Coverage, SmtpConfig, Story, build_message, check_transport, deliver, render
from pipeline.models import Origin
from pipeline.repeats import SentStory, body_shingles, copy_key, near_duplicates, split_repeats, story_id
from pipeline.watchlist import Watchlist

log = logging.getLogger(__name__)

CANDIDATE_LIMIT = 500
# An article built before a run started can become searchable after the run looked: the next
# run looks back this far before the last run's start, so it is never missed.
CHECKPOINT_MARGIN = timedelta(minutes=15)


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
    new_coverage_alone: bool = True  # an email whose only news is new coverage of stories already sent


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
                new_coverage_alone=bool(item.get("new_coverage_alone", True)),
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


def group_stories(found: list[tuple[str, dict[str, Any]]]) -> list[Story]:
    """One item per story: the index's story id (any script or language), or near-identical bodies.

    The earliest article leads the item; the others are listed as also reported by.
    """
    stories: list[tuple[Story, set[int]]] = []
    for doc_id, doc in found:
        marks = body_shingles(doc)
        story = story_id(doc)
        for item, item_marks in stories:
            if (story and story == story_id(item.doc)) or near_duplicates(marks, item_marks):
                item.also.append(doc)
                break
        else:
            stories.append((Story(doc_id, doc), marks))
    return [s for s, _ in stories]


def new_coverage(articles: list[Article], repeats: Mapping[str, SentStory]) -> list[Coverage]:
    """The repeats among the articles, one entry per story already sent, in the order they came;
    two copies of one article (a Google News item and the publisher's page) listed once."""
    by_story: dict[str, Coverage] = {}
    listed: set[tuple[str, tuple[str, str]]] = set()
    for doc_id, doc in articles:
        if (sent := repeats.get(doc_id)) is not None and (sent.doc_id, copy_key(doc)) not in listed:
            listed.add((sent.doc_id, copy_key(doc)))
            title, url = sent.doc.get("title") or "", sent.doc.get("url") or ""
            by_story.setdefault(sent.doc_id, Coverage(title, url, sent.sent_at)).new.append(doc)
    return list(by_story.values())


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
    repeats: int = 0  # matches that are new coverage of a story already sent
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
        pending = [a for a in found if a[0] not in pairs or pairs[a[0]].state is PairState.RESERVED]
        repeats = self._repeats(rule, pending, now)
        stories = group_stories([a for a in pending if a[0] not in repeats])
        coverage = new_coverage(pending, repeats)
        if not stories and not (coverage and rule.new_coverage_alone):
            return stories, None
        return stories, self._render(rule, stories, coverage).text

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
                "repeats": sum(o.repeats for o in outcomes),
                "failed": sum(1 for o in outcomes if o.error),
            },
        )
        return outcomes

    def _repeats(self, rule: AlertRule, pending: list[Article], now: datetime) -> dict[str, SentStory]:
        return split_repeats(self.es, self.indices, self.ledger, rule.name, pending, now - rule.max_age)

    def _render(self, rule: AlertRule, stories: list[Story], coverage: list[Coverage]) -> Any:
        return render(
            rule.name,
            stories,
            self.labels,
            self.term_names,
            rule.timezone,
            self.settings.kibana_url,
            self.indices.articles,
            coverage,
        )

    def _compose(self, rule: AlertRule, repeats: Mapping[str, SentStory]) -> Compose:
        def compose(articles: list[Article], message_id: str) -> EmailMessage:
            items = group_stories([a for a in articles if a[0] not in repeats])
            rendered = self._render(rule, items, new_coverage(articles, repeats))
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
        # A repeat goes out once, through the same reservations as news, as new coverage of its story.
        repeats = self._repeats(rule, fresh + due, now)
        outcome.repeats = len(repeats)
        old = [a[0] for a in fresh if a[0] in repeats and repeats[a[0]].mailed(a[1])]
        if not rule.new_coverage_alone and not due and all(a[0] in repeats for a in fresh):
            old = [a[0] for a in fresh]
        # Recorded as handled, without mail: nothing new for the recipients, or nothing they want alone.
        self.ledger.record_repeats(rule.name, old, period, now)
        fresh = [a for a in fresh if a[0] not in old]
        compose = self._compose(rule, repeats)
        for batch in self.ledger.batches(rule.name, fresh, due, pairs, period):
            result = deliver_batch(
                self.ledger, rule.name, list(rule.recipients), batch, period, now, compose, self._send
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
