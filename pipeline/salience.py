"""Salience: where in an article its mentions sit, and the rule conditions that use it.

A passing mention of Japan in an article about US–China tariffs is not an article about
Japan: rules may require a clause to be close to another clause (same sentence, same
paragraph, within N characters), placed in the title or lead, or mentioned repeatedly.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

# Sentence ends in every script of the corpus; "." only before a space, so 2.5 and U.S. stay whole.
_SENTENCE_END = re.compile(r"[。！？!?；;]+|\.(?=\s)|\n+")
_PARAGRAPH_END = re.compile(r"\n+")
EVIDENCE_MAX_CHARS = 300


class Scope(StrEnum):
    SENTENCE = "sentence"
    PARAGRAPH = "paragraph"
    CHARS = "chars"


class Placement(StrEnum):
    TITLE = "title"
    LEAD = "lead"


@dataclass(frozen=True)
class Near:
    clause: str  # name of another clause of the rule
    scope: Scope
    chars: int = 0  # for Scope.CHARS


@dataclass(frozen=True)
class Placed:
    placement: Placement


@dataclass(frozen=True)
class Repeated:
    min_mentions: int


Condition = Near | Placed | Repeated


@dataclass(frozen=True)
class Mention:
    start: int  # offsets in the normalised text
    end: int  # exclusive
    entry_id: str


class Layout:
    """Sentences, paragraphs, title and lead of a normalised `title + "\\n\\n" + body`.

    Each is found on first use: most articles meet no rule's mention counts, and never ask.
    """

    def __init__(self, norm_text: str, title_end: int) -> None:
        self.title_end = title_end
        self._text = norm_text

    @cached_property
    def _sentence_starts(self) -> list[int]:
        return _starts(self._text, _SENTENCE_END)

    @cached_property
    def _paragraph_starts(self) -> list[int]:
        return _starts(self._text, _PARAGRAPH_END)

    @cached_property
    def lead(self) -> tuple[int, int]:
        """The body's first paragraph (paragraph 0 is the title)."""
        lead = self._paragraph_starts[1:3]
        return (lead[0], lead[1] if len(lead) > 1 else len(self._text)) if lead else (0, 0)

    def sentence(self, pos: int) -> int:
        return bisect.bisect_right(self._sentence_starts, pos) - 1

    def paragraph(self, pos: int) -> int:
        return bisect.bisect_right(self._paragraph_starts, pos) - 1

    def sentence_span(self, pos: int) -> tuple[int, int]:
        i = self.sentence(pos)
        starts = self._sentence_starts
        return starts[i], starts[i + 1] if i + 1 < len(starts) else len(self._text)


def _starts(text: str, ends: re.Pattern[str]) -> list[int]:
    return [0] + [m.end() for m in ends.finditer(text) if m.end() < len(text)]


def witness(
    conditions: tuple[Condition, ...], own: list[Mention], clauses: dict[str, list[Mention]], layout: Layout
) -> Mention | None:
    """The mention showing that all conditions hold (from the most telling one), or None."""
    found = [holds(c, own, clauses, layout) for c in sorted(conditions, key=lambda c: isinstance(c, Repeated))]
    return found[0] if found and all(found) else None


def holds(
    condition: Condition, own: list[Mention], clauses: dict[str, list[Mention]], layout: Layout
) -> Mention | None:
    """The mention of this clause that satisfies the condition (the evidence), or None."""
    if isinstance(condition, Repeated):
        return own[0] if len(own) >= condition.min_mentions else None
    if isinstance(condition, Placed):
        lo, hi = (0, layout.title_end) if condition.placement is Placement.TITLE else layout.lead
        return next((m for m in own if lo <= m.start < hi), None)
    others = clauses.get(condition.clause, [])
    for mine in own:
        for other in others:
            if _close(mine, other, condition, layout):
                return mine
    return None


def describe(condition: Condition) -> str:
    """A condition as config/watchlist.yaml writes it."""
    if isinstance(condition, Repeated):
        return f"min_mentions: {condition.min_mentions}"
    if isinstance(condition, Placed):
        return f"in: {condition.placement.value}"
    within = condition.chars if condition.scope is Scope.CHARS else condition.scope.value
    return f"near: {condition.clause}, within: {within}"


def _close(a: Mention, b: Mention, near: Near, layout: Layout) -> bool:
    if near.scope is Scope.SENTENCE:
        return layout.sentence(a.start) == layout.sentence(b.start)
    if near.scope is Scope.PARAGRAPH:
        return layout.paragraph(a.start) == layout.paragraph(b.start)
    gap = max(a.start, b.start) - min(a.end, b.end)
    return gap <= near.chars


def evidence_text(original: str, offsets: Sequence[int], layout: Layout, mention: Mention) -> str:
    """The sentence around a mention, cut from the original text (its own script and case)."""
    start, end = layout.sentence_span(mention.start)
    if not offsets or end <= start:
        return ""
    text = original[offsets[start] : offsets[end - 1] + 1].strip()
    return text if len(text) <= EVIDENCE_MAX_CHARS else text[: EVIDENCE_MAX_CHARS - 1] + "…"
