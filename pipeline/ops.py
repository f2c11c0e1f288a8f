"""The failure mail to ops: which task failed, the error line, and a link to its log.

Sent with the same SMTP settings as alerts (NEWSMON_SMTP_*, or the smtp_default
connection) to NEWSMON_OPS_EMAIL, so env-only deployments reach ops too. That
server is also what fails in a mail outage, so a failure mail it does not take is
held in the alerts index (kind `ops_held`), logged at ERROR naming the server, and
sent by the next alert stage that reaches it, saying how long it was held. Until
then the failed task in Airflow and that log line are what ops see.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate
from enum import StrEnum

from elasticsearch import Elasticsearch

from pipeline.config import Settings
from pipeline.delivery import MESSAGE_DOMAIN
from pipeline.es import Indices
from pipeline.mail import DeliveryError, SmtpConfig, deliver

log = logging.getLogger(__name__)

HELD_KIND = "ops_held"
HELD_BATCH = 100  # failure mails sent per alert stage; more wait for the next one


class Notice(StrEnum):
    """What became of one failure mail."""

    SENT = "sent"
    HELD = "held"  # the mail server did not take it: kept, and sent by the next alert stage


@dataclass(frozen=True)
class TaskFailure:
    """What the orchestrator says about a failed task, converted at the DAG boundary."""

    dag_id: str
    task_id: str
    run_id: str
    try_number: int
    error: str  # "ExceptionType: first line of the message"
    log_url: str
    map_index: int = -1

    @property
    def task(self) -> str:
        return self.task_id + (f"[{self.map_index}]" if self.map_index >= 0 else "")


def error_line(exc: BaseException | str | None) -> str:
    """One line that says what went wrong, for a subject or a summary."""
    if exc is None:
        return "no error recorded (killed, or timed out by the orchestrator)"
    if isinstance(exc, str):
        return exc.strip().splitlines()[0] if exc.strip() else "unknown error"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


@dataclass(frozen=True)
class Held:
    """Why and since when a failure mail waits for the mail server."""

    since: datetime
    reason: str


def failure_message(failure: TaskFailure, sender: str, to: str, held: Held | None = None) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"[newsmon] {failure.dag_id}.{failure.task} failed: {failure.error[:120]}"
    message["From"] = sender
    message["To"] = to
    message["Date"] = formatdate(localtime=False)
    # One id per failed attempt: a callback that runs twice, or a held mail sent later, is recognisably one mail.
    message["Message-ID"] = f"<ops-{_key(failure)}@{MESSAGE_DOMAIN}>"
    message.set_content(
        f"Task {failure.task} of DAG {failure.dag_id} failed.\n\n"
        f"Run:     {failure.run_id}\n"
        f"Attempt: {failure.try_number}\n"
        f"Error:   {failure.error}\n"
        f"Log:     {failure.log_url}\n"
        + (
            f"\nThis mail was held from {held.since.isoformat(timespec='seconds')}: the mail server did not "
            f"take it ({held.reason}).\n"
            if held
            else ""
        )
    )
    return message


def notify_failure(
    failure: TaskFailure,
    settings: Settings,
    smtp: SmtpConfig,
    store: tuple[Elasticsearch, Indices] | None,
    now: datetime | None = None,
) -> Notice:
    """Mail ops about one failed task, or hold the mail in `store` when the server does not take it.

    Raises:
        DeliveryError: the server did not take it and there is no store to hold it in.
        ConfigError: neither an SMTP host nor NEWSMON_ALERT_OUTBOX is set.
    """
    try:
        deliver(failure_message(failure, smtp.sender, settings.ops_email), smtp, settings.alert_outbox)
    except DeliveryError as exc:
        log.error(
            "ops mail to %s about %s.%s not sent, mail server %s:%s: %s",
            settings.ops_email,
            failure.dag_id,
            failure.task,
            smtp.host,
            smtp.port,
            exc,
        )
        if store is None:
            raise
        es, indices = store
        when = now or datetime.now(UTC)
        es.index(
            index=indices.alerts,
            id=f"ops:{_key(failure)}",
            document={
                "kind": HELD_KIND,
                "reserved_at": when.isoformat(),
                "reason": str(exc),
                "failure": asdict(failure),
            },
            refresh=True,
        )
        log.error("ops mail held in %s: the next alert stage sends it", indices.alerts)
        return Notice.HELD
    return Notice.SENT


def send_held(settings: Settings, es: Elasticsearch, indices: Indices, smtp: SmtpConfig) -> int:
    """Send the failure mails held during a mail outage, oldest first; returns how many went out.

    Stops at the first one the server does not take: the rest stay held for the next stage.
    """
    hits = es.search(
        index=indices.alerts,
        size=HELD_BATCH,
        query={"term": {"kind": HELD_KIND}},
        sort=[{"reserved_at": "asc"}],
    )["hits"]["hits"]
    sent = 0
    for hit in hits:
        source = hit["_source"]
        held = Held(datetime.fromisoformat(source["reserved_at"]), source["reason"])
        message = failure_message(TaskFailure(**source["failure"]), smtp.sender, settings.ops_email, held)
        try:
            deliver(message, smtp, settings.alert_outbox)
        except DeliveryError as exc:
            log.warning("held ops mails still not sent (%d left): %s", len(hits) - sent, exc)
            break
        # Sent then deleted: a crash between the two sends it again under the same Message-ID.
        es.delete(index=indices.alerts, id=hit["_id"], refresh=True)
        sent += 1
    return sent


def _key(failure: TaskFailure) -> str:
    key = "\0".join([failure.dag_id, failure.task, failure.run_id, str(failure.try_number)])
    return hashlib.sha256(key.encode()).hexdigest()[:32]
