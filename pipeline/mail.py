"""Alert emails: rendering (text and HTML, every article string escaped) and delivery."""

from __future__ import annotations

import html
import re
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from pipeline.config import ConfigError, Settings
from pipeline.document import language_tag
from pipeline.text import normalise, normalise_mapped

SNIPPET_CHARS = 160
EVIDENCE_SHOWN = 2  # sentences of relevance.evidence under each story


class DeliveryError(Exception):
    """The mail server could not be reached or refused the message; retry later."""


@dataclass(frozen=True)
class SmtpConfig:
    host: str | None
    port: int = 25
    security: str = "none"  # none | starttls | ssl
    user: str | None = None
    password: str | None = None
    sender: str = "newsmon@localhost"
    timeout: float = 20.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig:
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            user=settings.smtp_user,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            sender=settings.smtp_from,
            timeout=settings.smtp_timeout,
        )


@dataclass
class Story:
    """One article in an email, with the other outlets that ran the same story."""

    doc_id: str
    doc: dict[str, Any]
    also: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Coverage:
    """New reports of a story the rule already mailed: the article its recipients saw, when, the new ones."""

    title: str
    url: str
    sent_at: datetime
    new: list[dict[str, Any]] = field(default_factory=list)


def kibana_link(base: str, doc_id: str, data_view: str) -> str:
    state = f"(dataSource:(dataViewId:'{data_view}',type:dataView),query:(language:kuery,query:'_id:\"{doc_id}\"'))"
    return f"{base.rstrip('/')}/app/discover#/?_g=(time:(from:now-1y,to:now))&_a={quote(state, safe='(),:')}"


def snippet(body: str, names: list[str]) -> list[tuple[str, bool]]:
    """A short window around the first matched term, as (text, is_match) pieces.

    Terms are found in the normalised body and cut from the original through the offset
    map, so the reader sees the article's own script and case, never the normalised form.
    """
    norm, offsets = normalise_mapped(body)
    keys = sorted({normalise(n) for n in names if n}, key=len, reverse=True)
    if not keys or not norm:
        return [(body[:SNIPPET_CHARS], False)] if body else []
    pattern = re.compile("|".join(re.escape(k) for k in keys))
    first = pattern.search(norm)
    start = max(0, (first.start() if first else 0) - SNIPPET_CHARS // 3)
    stop = min(len(norm), start + SNIPPET_CHARS)

    def original(lo: int, hi: int) -> str:
        return body[offsets[lo] : offsets[hi - 1] + 1] if hi > lo else ""

    pieces: list[tuple[str, bool]] = []
    cursor = start
    for match in pattern.finditer(norm, start, stop):
        if match.start() < cursor:  # two normalised characters from one original (… → ...)
            continue
        pieces += [(original(cursor, match.start()), False), (original(match.start(), match.end()), True)]
        cursor = match.end()
    pieces.append((original(cursor, stop), False))
    return [(p, m) for p, m in pieces if p]


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def render(
    rule_name: str,
    stories: list[Story],
    labels: dict[str, str],
    term_names: dict[str, list[str]],
    zone: ZoneInfo,
    kibana_url: str,
    data_view: str,
    coverage: Sequence[Coverage] = (),
) -> Rendered:
    """Subject, text part and HTML part for one alert email: its new stories, then new coverage of
    stories already sent."""
    # Watch terms (dual-use items, rare earths …) say more in a subject than places do.
    term_counts: dict[tuple[bool, str], int] = {}
    for doc in [s.doc for s in stories] or [d for c in coverage for d in c.new]:
        watched = set(doc.get("watch_terms", []))
        for term in doc["relevance"]["matched_terms"]:
            key = (term not in watched, term)
            term_counts[key] = term_counts.get(key, 0) + 1
    ranked = sorted(term_counts.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1]))
    top = [labels.get(term, term) for (_, term), _ in ranked[:3]]
    n, m = len(stories), len(coverage)
    what = [f"{n} new article{'s' if n != 1 else ''}"] if n or not m else []
    what += [f"new coverage of {m} stor{'ies' if m != 1 else 'y'} already sent"] if m else []
    subject = f"[newsmon] {rule_name}: {', '.join(what)} — {', '.join(top)}"
    text_parts, html_parts = [], []
    for story in stories:
        doc = story.doc
        when = datetime.fromisoformat(doc["published_at"]).astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
        source = doc["source"]["name"] + (f" ({doc['source']['domain']})" if doc["source"].get("domain") else "")
        names = [n for t in doc["relevance"]["matched_terms"] for n in term_names.get(t, [])]
        pieces = snippet(doc.get("body") or "", names)
        because = (doc["relevance"].get("evidence") or [])[:EVIDENCE_SHOWN]
        entities = ", ".join(labels.get(i, i) for i in doc.get("entity_ids", [])[:12])
        link = kibana_link(kibana_url, story.doc_id, data_view)
        # Outlet, language and link of each other report: the reader picks the version to open.
        also = ", ".join(f"{a['source']['name']} ({language_tag(a)}) {a['url']}" for a in story.also)
        text_parts.append(
            "\n".join(
                filter(
                    None,
                    [
                        f"* {doc['title']}",
                        f"  {doc['url']}",
                        f"  {source} · {when}",
                        "  " + "".join(f"[{p}]" if m else p for p, m in pieces),
                        *(f"  Because: {sentence}" for sentence in because),
                        f"  Entities: {entities}",
                        f"  Also reported by: {also}" if also else "",
                        f"  Kibana: {link}",
                    ],
                )
            )
        )
        e = html.escape
        html_parts.append(
            f'<li><p><a href="{e(doc["url"])}"><strong>{e(doc["title"])}</strong></a><br>'
            f"<small>{e(source)} · {e(when)}</small></p>"
            f"<p>{''.join(f'<mark>{e(p)}</mark>' if m else e(p) for p, m in pieces)}</p>"
            + "".join(f"<p><small>Because: {e(sentence)}</small></p>" for sentence in because)
            + f"<p><small>Entities: {e(entities)}</small></p>"
            + (f"<p><small>Also reported by: {e(also)}</small></p>" if also else "")
            + f'<p><small><a href="{e(link)}">Open in Kibana</a></small></p></li>'
        )
    coverage_text, coverage_html = _coverage(coverage, zone)
    text = f"{subject}\n\n" + "\n\n".join([*text_parts, *coverage_text]) + "\n"
    items = f"<ol>{''.join(html_parts)}</ol>" if html_parts else ""
    body_html = f"<!DOCTYPE html><html><body><h2>{html.escape(subject)}</h2>{items}{coverage_html}</body></html>"
    return Rendered(subject=subject, text=text, html=body_html)


COVERAGE_HEADING = "New coverage of stories already sent"


def _coverage(coverage: Sequence[Coverage], zone: ZoneInfo) -> tuple[list[str], str]:
    """One line per story already sent: the title its recipients saw, the day, the new outlets."""
    if not coverage:
        return [], ""
    e = html.escape
    lines, items = [], []
    for story in coverage:
        day = story.sent_at.astimezone(zone).strftime("%Y-%m-%d")
        outlets = [(d["source"]["name"], language_tag(d), d["url"]) for d in story.new]
        said = f"new coverage of a story sent on {day}"
        lines.append(f"- {story.title} — {said}: " + ", ".join(f"{o} ({lang}) {url}" for o, lang, url in outlets))
        links = ", ".join(f'<a href="{e(url)}">{e(o)}</a> ({e(lang)})' for o, lang, url in outlets)
        items.append(f'<li><a href="{e(story.url)}">{e(story.title)}</a> — {e(said)}: {links}</li>')
    return [f"{COVERAGE_HEADING}:\n" + "\n".join(lines)], f"<h3>{COVERAGE_HEADING}</h3><ul>{''.join(items)}</ul>"


def build_message(rendered: Rendered, sender: str, recipients: list[str], message_id: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = rendered.subject
    message["From"] = sender
    # Recipients only in Bcc (no To: RFC 5322 §3.6.3), so none learns who else is on the rule;
    # smtplib sends to them and drops the header.
    message["Bcc"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = message_id
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message


def check_transport(smtp: SmtpConfig, settings: Settings) -> None:
    """An alert needs an SMTP host, or an outbox asked for explicitly: never a silent file on a worker."""
    if not smtp.host and not settings.alert_outbox:
        raise ConfigError(
            "alerts cannot be sent: set NEWSMON_SMTP_HOST (under Airflow: the smtp_default connection), "
            "or NEWSMON_ALERT_OUTBOX to write them as .eml files"
        )
    if smtp.host and smtp.security == "none" and smtp.password and not settings.smtp_allow_plaintext_login:
        raise ConfigError(
            f"SMTP {smtp.host}:{smtp.port}: a password would be sent in clear (NEWSMON_SMTP_SECURITY=none); "
            "use starttls or ssl, or set NEWSMON_SMTP_ALLOW_PLAINTEXT_LOGIN=true"
        )


def deliver(message: EmailMessage, smtp: SmtpConfig, outbox: Path | None) -> str:
    """Send through SMTP, or write an .eml file to the outbox when asked for; returns where it went.

    Raises:
        DeliveryError: the server is unreachable or refused the message.
        ConfigError: neither an SMTP host nor an outbox is set.
    """
    if not smtp.host:
        if outbox is None:
            raise ConfigError("no SMTP host (NEWSMON_SMTP_HOST) and no NEWSMON_ALERT_OUTBOX")
        outbox.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9]+", "-", str(message["Message-ID"])).strip("-")
        path = outbox / f"{name}.eml"
        path.write_bytes(bytes(message))
        return str(path)
    try:
        if smtp.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                smtp.host, smtp.port, timeout=smtp.timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
        with client:
            if smtp.security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if smtp.user and smtp.password:
                client.login(smtp.user, smtp.password)
            client.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP {smtp.host}:{smtp.port} did not take the message: {exc}") from exc
    return f"smtp://{smtp.host}:{smtp.port}"
