"""`newsmon label` and `newsmon evaluate`: analysts' verdicts in the index, the rules measured on them.

A verdict is a field of its article (`analyst`), written with a partial update: `retag` and
template migrations rewrite other fields and copy `_source`, so the verdict stays. Evaluation
re-tags every labelled article with the current watchlist, so it measures the rules as they
are now, before any `retag`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError

from pipeline.es import Indices, scan_index
from pipeline.models import Verdict, article_id
from pipeline.salience import describe
from pipeline.tag import ClauseCheck, ClauseOutcome, Tagger
from pipeline.urls import UrlError, canonical_url


class FeedbackError(Exception):
    """A label that cannot be stored; the message names the URL."""


class LabelOutcome(StrEnum):
    STORED = "stored"
    CHANGED = "changed"  # the article had the other verdict
    UNCHANGED = "unchanged"  # it had this verdict already


class Mistake(StrEnum):
    FALSE_POSITIVE = "false positive"
    FALSE_NEGATIVE = "false negative"


@dataclass(frozen=True)
class Miss:
    mistake: Mistake
    url: str
    title: str
    reasons: list[str]  # per rule: the terms that matched it, or the clause that failed


@dataclass
class Evaluation:
    counts: Counter[str] = field(default_factory=Counter)  # tp, fp, fn, tn
    misses: list[Miss] = field(default_factory=list)

    @property
    def labelled(self) -> int:
        return sum(self.counts.values())

    @property
    def precision(self) -> float | None:
        flagged = self.counts["tp"] + self.counts["fp"]
        return self.counts["tp"] / flagged if flagged else None

    @property
    def recall(self) -> float | None:
        relevant = self.counts["tp"] + self.counts["fn"]
        return self.counts["tp"] / relevant if relevant else None


def _find(es: Elasticsearch, indices: Indices, url: str) -> dict[str, Any]:
    """The article document with this URL (as given or canonical, or its final URL)."""
    try:
        canonical = canonical_url(url)
    except UrlError as exc:
        raise FeedbackError(f"{url}: {exc}") from exc
    try:
        return dict(es.get(index=indices.articles, id=article_id(canonical), source_includes=["analyst"]))
    except NotFoundError:
        pass
    query = {"bool": {"should": [{"terms": {"url": [url, canonical]}}, {"terms": {"final_url": [url, canonical]}}]}}
    hits = es.search(index=indices.articles, query=query, size=1, source_includes=["analyst"])["hits"]["hits"]
    if not hits:
        raise FeedbackError(f"{url}: no indexed article has this URL (newsmon search finds indexed articles)")
    return dict(hits[0])


def label_article(
    es: Elasticsearch, indices: Indices, url: str, verdict: Verdict, now: datetime | None = None
) -> LabelOutcome:
    """Store an analyst's verdict on the article at `url`; labelling twice changes nothing."""
    hit = _find(es, indices, url)
    previous = ((hit.get("_source") or {}).get("analyst") or {}).get("verdict")
    if previous == verdict.value:
        return LabelOutcome.UNCHANGED
    es.update(
        index=hit["_index"],
        id=hit["_id"],
        doc={"analyst": {"verdict": verdict.value, "labelled_at": (now or datetime.now(UTC)).isoformat()}},
        retry_on_conflict=3,
        refresh=True,
    )
    return LabelOutcome.STORED if previous is None else LabelOutcome.CHANGED


def evaluate(es: Elasticsearch, indices: Indices, tagger: Tagger) -> Evaluation:
    """Precision and recall of the current rules on the labelled articles, and why each miss."""
    result = Evaluation()
    es.indices.refresh(index=indices.articles)
    labelled = scan_index(
        es,
        indices.articles,
        query={"exists": {"field": "analyst.verdict"}},
        source_includes=["url", "title", "body", "analyst"],
    )
    for hit in labelled:
        src = hit["_source"]
        title, body = src.get("title") or "", src.get("body") or ""
        wanted = src["analyst"]["verdict"] == Verdict.RELEVANT.value
        tags = tagger.tag(title, body)
        flagged = tags.relevance.relevant
        result.counts[("t" if flagged == wanted else "f") + ("p" if flagged else "n")] += 1
        if flagged == wanted:
            continue
        explained = tagger.explain(title, body)
        if flagged:
            reasons = [_matched(rule.id, checks) for rule, checks in explained if _met(checks)]
            reasons += [f"because: {sentence}" for sentence in tags.relevance.evidence]
        else:
            reasons = [_failed(rule.id, checks) for rule, checks in explained if not _met(checks)]
            if not reasons:
                reasons = [f"score {tags.relevance.score} is below the threshold {tagger.watchlist.threshold}"]
        mistake = Mistake.FALSE_POSITIVE if flagged else Mistake.FALSE_NEGATIVE
        result.misses.append(Miss(mistake, src.get("url") or hit["_id"], title, reasons))
    return result


def _met(checks: list[ClauseCheck]) -> bool:
    return all(c.outcome is ClauseOutcome.MET for c in checks)


def _terms(check: ClauseCheck) -> str:
    counts = Counter(m.entry_id for m in check.mentions)
    return ", ".join(f"{term} ×{n}" for term, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _matched(rule: str, checks: list[ClauseCheck]) -> str:
    return f"rule {rule} matched: " + "; ".join(f"{c.clause.name}: {_terms(c)}" for c in checks)


def _failed(rule: str, checks: list[ClauseCheck]) -> str:
    parts = []
    for check in checks:
        clause = check.clause
        if check.outcome is ClauseOutcome.MET:
            continue
        if not check.mentions:
            parts.append(f"{clause.name}: no mention of {', '.join(sorted(clause.targets))}")
        elif check.outcome is ClauseOutcome.TOO_FEW_MENTIONS:
            parts.append(f"{clause.name}: {_terms(check)} (needs {clause.min_mentions} mentions)")
        else:
            alternatives = ", ".join("{" + ", ".join(map(describe, conditions)) + "}" for conditions in clause.any_of)
            parts.append(f"{clause.name}: {_terms(check)}, but none of: {alternatives}")
    return f"rule {rule} failed: " + "; ".join(parts)
