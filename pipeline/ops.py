"""The failure mail to ops: which task failed, the error line, and a link to its log.

Sent with the same SMTP settings as alerts (NEWSMON_SMTP_*, or the smtp_default
connection) to NEWSMON_OPS_EMAIL, so env-only deployments reach ops too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate

from pipeline.config import Settings
from pipeline.delivery import MESSAGE_DOMAIN
from pipeline.mail import SmtpConfig, deliver


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


def failure_message(failure: TaskFailure, sender: str, to: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"[newsmon] {failure.dag_id}.{failure.task} failed: {failure.error[:120]}"
    message["From"] = sender
    message["To"] = to
    message["Date"] = formatdate(localtime=False)
    key = "\0".join([failure.dag_id, failure.task, failure.run_id, str(failure.try_number)])
    # One id per failed attempt: a callback that runs twice is recognisably the same mail.
    message["Message-ID"] = f"<ops-{hashlib.sha256(key.encode()).hexdigest()[:32]}@{MESSAGE_DOMAIN}>"
    message.set_content(
        f"Task {failure.task} of DAG {failure.dag_id} failed.\n\n"
        f"Run:     {failure.run_id}\n"
        f"Attempt: {failure.try_number}\n"
        f"Error:   {failure.error}\n"
        f"Log:     {failure.log_url}\n"
    )
    return message


def notify_failure(failure: TaskFailure, settings: Settings, smtp: SmtpConfig) -> str:
    """Mail ops about one failed task; returns where the mail went.

    Raises:
        DeliveryError: the mail server is down or refused the mail.
        ConfigError: neither an SMTP host nor NEWSMON_ALERT_OUTBOX is set.
    """
    return deliver(failure_message(failure, smtp.sender, settings.ops_email), smtp, settings.alert_outbox)
