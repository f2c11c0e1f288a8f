"""An alert from reservation to sent: the one owner of each (rule, article) pair's record.

A pair is reserved in Elasticsearch with op_type=create *before* its email goes out, so of
two overlapping senders exactly one wins it (the other gets a 409 and skips it). The
reservation carries a lease (NEWSMON_ALERT_LEASE_SECONDS) and the Message-ID it is sent
under: a sender killed after the server accepted the message but before recording it leaves
a reservation that another run takes over once the lease has passed, and that run resends
the same message with the same Message-ID, so mail clients can drop the duplicate. A refused
send releases its reservations, so the next run sends the pairs again.

Record states, one document per pair (id `rule:article_id`): reserved → sent (as an item, or
as new coverage of a story already sent), or repeat (new coverage recorded without mail, for a
rule that mails no new coverage alone).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from enum import StrEnum
from typing import Any

from elasticsearch import Elasticsearch

from pipeline.es import Indices
from pipeline.mail import DeliveryError

log = logging.getLogger(__name__)

MESSAGE_DOMAIN = "newsmon.local"
EXPIRED_LIMIT = 500  # crashed senders' pairs taken over per run
# One id per sending process, so a reservation says who holds it.
OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

Article = tuple[str, dict[str, Any]]  # (document id, _source)


class PairState(StrEnum):
    RESERVED = "reserved"
    SENT = "sent"
    REPEAT = "repeat"


class Delivery(StrEnum):
    """What became of one email's worth of pairs."""

    SENT = "sent"
    HELD = "held"  # another sender holds every pair (its lease is still running)
    FAILED = "failed"  # the mail server refused or was down; the pairs were released


@dataclass(frozen=True)
class Pair:
    """The stored record of one (rule, article) pair, with its version for conditional writes."""

    article_id: str
    state: PairState
    seq_no: int
    primary_term: int
    message_id: str | None = None
    lease_until: datetime | None = None
    sent_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.state is PairState.RESERVED and (self.lease_until is None or self.lease_until <= now)


@dataclass(frozen=True)
class Batch:
    """Articles that go out in one email, under one Message-ID."""

    articles: list[Article]
    message_id: str
    taken_over: dict[str, Pair]  # expired reservations of a crashed sender, by article id


@dataclass(frozen=True)
class Result:
    outcome: Delivery
    articles: int = 0
    held: int = 0  # pairs of the batch another sender won
    message_id: str | None = None
    where: str | None = None
    error: str | None = None


def record_id(rule: str, article_id: str) -> str:
    return f"{rule}:{article_id}"


def message_id(rule: str, article_ids: Iterable[str], period: str | None) -> str:
    """The same rule, period and set of articles always give the same Message-ID (RFC 5322 §3.6.4)."""
    key = "\0".join([rule, period or "", *sorted(article_ids)])
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{MESSAGE_DOMAIN}>"


class Ledger:
    """Reserves, records and releases (rule, article) pairs in the alerts index."""

    def __init__(self, es: Elasticsearch, indices: Indices, lease: timedelta) -> None:
        self.es, self.index, self.lease = es, indices.alerts, lease

    def lookup(self, rule: str, article_ids: list[str]) -> dict[str, Pair]:
        """The stored pairs among these articles (a realtime read: reservations show at once)."""
        if not article_ids:
            return {}
        docs = self.es.mget(index=self.index, ids=[record_id(rule, i) for i in article_ids])["docs"]
        pairs = {}
        for article_id, doc in zip(article_ids, docs, strict=True):
            if doc.get("found"):
                source = doc["_source"]
                lease, sent = source.get("lease_until"), source.get("sent_at")
                pairs[article_id] = Pair(
                    article_id=article_id,
                    state=PairState(source.get("kind", PairState.SENT)),
                    seq_no=doc["_seq_no"],
                    primary_term=doc["_primary_term"],
                    message_id=source.get("message_id"),
                    lease_until=datetime.fromisoformat(lease) if lease else None,
                    sent_at=datetime.fromisoformat(sent) if sent else None,
                )
        return pairs

    def expired(self, rule: str, now: datetime) -> list[str]:
        """Articles whose pair a sender reserved and left past its lease (it crashed before recording)."""
        query = {
            "bool": {
                "filter": [
                    {"term": {"kind": PairState.RESERVED.value}},
                    {"term": {"rule": rule}},
                    {"range": {"lease_until": {"lte": now.isoformat()}}},
                ]
            }
        }
        hits = self.es.search(index=self.index, size=EXPIRED_LIMIT, source_includes=["article_id"], query=query)
        return [h["_source"]["article_id"] for h in hits["hits"]["hits"]]

    def batches(
        self, rule: str, fresh: list[Article], due: list[Article], pairs: dict[str, Pair], period: str | None
    ) -> list[Batch]:
        """Crashed senders' batches first (each under its old Message-ID), then one batch of fresh articles."""
        resends: dict[str, list[Article]] = {}
        for article in due:
            pair = pairs[article[0]]
            resends.setdefault(pair.message_id or message_id(rule, [article[0]], period), []).append(article)
        batches = [Batch(articles, mid, {a[0]: pairs[a[0]] for a in articles}) for mid, articles in resends.items()]
        if fresh:
            batches.append(Batch(fresh, message_id(rule, [a[0] for a in fresh], period), {}))
        return batches

    def reserve(
        self, rule: str, batch: Batch, period: str | None, now: datetime
    ) -> tuple[list[Article], dict[str, Pair]]:
        """Claim the batch's pairs; returns the articles won and their records.

        A fresh pair is created only if absent; an expired one is taken over only if nobody
        changed it since it was read (seq_no/primary_term). A 409 means another sender won it.
        """
        record = {
            "kind": PairState.RESERVED.value,
            "rule": rule,
            "period": period,
            "message_id": batch.message_id,
            "owner": OWNER,
            "reserved_at": now.isoformat(),
            "lease_until": (now + self.lease).isoformat(),
        }
        operations: list[dict[str, Any]] = []
        for article_id, _ in batch.articles:
            meta: dict[str, Any] = {"_index": self.index, "_id": record_id(rule, article_id)}
            old = batch.taken_over.get(article_id)
            if old:
                operations.append({"index": meta | {"if_seq_no": old.seq_no, "if_primary_term": old.primary_term}})
            else:
                operations.append({"create": meta})
            operations.append(record | {"article_id": article_id})
        items = self.es.bulk(operations=operations)["items"]
        won: list[Article] = []
        claims: dict[str, Pair] = {}
        for article, item in zip(batch.articles, items, strict=True):
            result = next(iter(item.values()))
            if result["status"] in (200, 201):
                won.append(article)
                claims[article[0]] = Pair(
                    article[0], PairState.RESERVED, result["_seq_no"], result["_primary_term"], batch.message_id
                )
            elif result["status"] != 409:
                raise DeliveryError(f"cannot reserve alert {record_id(rule, article[0])}: {result.get('error')}")
        return won, claims

    def restamp(self, rule: str, claims: dict[str, Pair], new_id: str) -> dict[str, Pair]:
        """Give reservations the Message-ID of the subset actually won, before anything is sent."""
        operations: list[dict[str, Any]] = []
        for article_id, pair in claims.items():
            operations.append(
                {
                    "update": {
                        "_index": self.index,
                        "_id": record_id(rule, article_id),
                        "if_seq_no": pair.seq_no,
                        "if_primary_term": pair.primary_term,
                    }
                }
            )
            operations.append({"doc": {"message_id": new_id}})
        items = self.es.bulk(operations=operations)["items"]
        kept = {}
        for (article_id, _), item in zip(claims.items(), items, strict=True):
            result = item["update"]
            if result["status"] == 200:
                kept[article_id] = Pair(
                    article_id, PairState.RESERVED, result["_seq_no"], result["_primary_term"], new_id
                )
        return kept

    def mark_sent(
        self, rule: str, claims: dict[str, Pair], recipients: list[str], period: str | None, now: datetime
    ) -> None:
        operations: list[dict[str, Any]] = []
        for article_id, pair in claims.items():
            operations.append({"index": {"_index": self.index, "_id": record_id(rule, article_id)}})
            operations.append(
                {
                    "kind": PairState.SENT.value,
                    "rule": rule,
                    "article_id": article_id,
                    "message_id": pair.message_id,
                    "recipients": recipients,
                    "period": period,
                    "owner": OWNER,
                    "sent_at": now.isoformat(),
                }
            )
        response = self.es.bulk(operations=operations, refresh=True)
        if response["errors"]:
            failed = [next(iter(i.values())) for i in response["items"] if next(iter(i.values())).get("error")]
            raise DeliveryError(f"alert {rule} sent but not recorded: {failed[0]['error']}")

    def release(self, rule: str, claims: dict[str, Pair]) -> None:
        """Drop our reservations after a refused send, unless someone else has taken them over."""
        operations = [
            {
                "delete": {
                    "_index": self.index,
                    "_id": record_id(rule, article_id),
                    "if_seq_no": pair.seq_no,
                    "if_primary_term": pair.primary_term,
                }
            }
            for article_id, pair in claims.items()
        ]
        if operations:
            self.es.bulk(operations=operations, refresh=True)

    def record_repeats(self, rule: str, article_ids: list[str], period: str | None, now: datetime) -> None:
        """New coverage a rule mails only beside news: recorded as handled, never overwriting a reservation."""
        operations: list[dict[str, Any]] = []
        for article_id in article_ids:
            operations.append({"create": {"_index": self.index, "_id": record_id(rule, article_id)}})
            operations.append(
                {
                    "kind": PairState.REPEAT.value,
                    "rule": rule,
                    "article_id": article_id,
                    "period": period,
                    "sent_at": now.isoformat(),
                }
            )
        if operations:
            self.es.bulk(operations=operations, refresh=True)


Compose = Callable[[list[Article], str], EmailMessage]
Send = Callable[[EmailMessage], str]


def deliver_batch(
    ledger: Ledger,
    rule: str,
    recipients: list[str],
    batch: Batch,
    period: str | None,
    now: datetime,
    compose: Compose,
    send: Send,
) -> Result:
    """Reserve → send → mark sent, or release on a refused send. The email holds only pairs won.

    Raises:
        DeliveryError: only when the store refuses a reservation for a reason other than a conflict.
    """
    won, claims = ledger.reserve(rule, batch, period, now)
    held = len(batch.articles) - len(won)
    if not won:
        return Result(Delivery.HELD, held=held)
    mid = batch.message_id
    if not batch.taken_over and len(won) != len(batch.articles):
        # Another sender won some pairs: this email is a different set, so it gets its own id.
        mid = message_id(rule, [a[0] for a in won], period)
        claims = ledger.restamp(rule, claims, mid)
        held = len(batch.articles) - len(claims)
        won = [a for a in won if a[0] in claims]
        if not won:
            return Result(Delivery.HELD, held=held)
    message = compose(won, mid)
    try:
        where = send(message)
    except DeliveryError as exc:
        ledger.release(rule, claims)
        return Result(Delivery.FAILED, held=held, message_id=mid, error=str(exc))
    ledger.mark_sent(rule, claims, recipients, period, now)
    log.debug("alert %s sent: %d articles as %s to %s", rule, len(won), mid, where)
    return Result(Delivery.SENT, articles=len(won), held=held, message_id=mid, where=where)
