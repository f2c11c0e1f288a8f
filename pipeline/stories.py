"""Stories: articles that report the same event, in any script or language.

An article's fingerprint is what survives translation: its canonical entity ids (with their
mention counts), the numbers it gives (1005 items, 20 entities) and the days of the month it
names (6日, 6 January, Jan. 6). Simplified and traditional Chinese, Japanese and English texts
of one event share them, because the tagger maps every name to one id and the normalisation
folds scripts and full-width digits before marks are read.

The rule: an article joins the story whose members, summed, are most similar to it (cosine
of weighted fingerprints), if that story started within WINDOW of the article and the
similarity reaches JOIN; otherwise it starts a story of its own and leads it. Entities that
most articles mention (Japan, China) weigh little: each is weighted by its inverse document
frequency among recent articles. Numbers and days weigh as much as a rare entity.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

WINDOW = timedelta(days=3)  # an article joins only stories that started less than this far from it
JOIN = 0.4  # cosine similarity to a story's summed fingerprint needed to join it
MARK_WEIGHT = 6.8  # weight of one number or day: as much as an entity in few articles

_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_DAY_PATTERNS = (
    re.compile(r"(?<!\d)(\d{1,2})\s*日"),  # 1月6日, 6日 (zh, ja)
    re.compile(rf"\b(?:{_MONTHS})[a-z]*\.?\s+(\d{{1,2}})\b"),  # january 6, jan. 6
    re.compile(rf"\b(\d{{1,2}})\s+(?:{_MONTHS})[a-z]*\b"),  # 6 january
)
_NUMBER = re.compile(r"(?<![\d.,])\d[\d,]*(?:\.\d+)?(?!\d)")


def story_marks(normalised_text: str) -> list[str]:
    """Numbers and days of the month an article names, from normalise()d text.

    A number of one digit says too little; a year (1900–2100) names no event, only its era.
    Days are kept without their month: stories are matched within days of each other.
    """
    marks = set()
    for pattern in _DAY_PATTERNS:
        marks |= {f"day:{int(d)}" for d in pattern.findall(normalised_text) if 1 <= int(d) <= 31}
    for raw in _NUMBER.findall(normalised_text):
        value = raw.replace(",", "")
        if "." not in value and (len(value) < 2 or (len(value) == 4 and 1900 <= int(value) <= 2100)):
            continue
        marks.add(f"n:{value}")
    return sorted(marks)


@dataclass(frozen=True)
class Fingerprint:
    entities: Mapping[str, int]  # canonical entity id -> mentions
    marks: frozenset[str]

    def terms(self) -> list[str]:
        """As the keywords of a document's `story_fingerprint`: e:japan=3, n:1005, day:6."""
        return sorted([f"e:{e}={n}" for e, n in self.entities.items()] + list(self.marks))

    @classmethod
    def of_terms(cls, terms: Iterable[str]) -> Fingerprint:
        entities, marks = {}, set()
        for term in terms:
            if term.startswith("e:"):
                entity, _, count = term[2:].rpartition("=")
                entities[entity] = int(count)
            else:
                marks.add(term)
        return cls(entities, frozenset(marks))


@dataclass(frozen=True)
class EntityWeights:
    """Document frequencies of entity ids among `total` recent articles."""

    frequency: Mapping[str, int]
    total: int

    @classmethod
    def of(cls, fingerprints: Iterable[Fingerprint]) -> EntityWeights:
        counts: Counter[str] = Counter()
        total = 0
        for fp in fingerprints:
            counts.update(fp.entities.keys())
            total += 1
        return cls(counts, total)

    def plus(self, other: EntityWeights) -> EntityWeights:
        return EntityWeights(Counter(self.frequency) + Counter(other.frequency), self.total + other.total)

    def idf(self, entity_id: str) -> float:
        return math.log((self.total + 1) / (self.frequency.get(entity_id, 0) + 1)) + 1


def vector(fp: Fingerprint, weights: EntityWeights) -> dict[str, float]:
    out = {f"e:{e}": (1 + math.log(n)) * weights.idf(e) for e, n in fp.entities.items() if n > 0}
    out.update((m, MARK_WEIGHT) for m in fp.marks)
    return out


def cosine(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    dot = sum(w * b.get(k, 0.0) for k, w in a.items())
    norms = math.sqrt(sum(w * w for w in a.values())) * math.sqrt(sum(w * w for w in b.values()))
    return dot / norms if norms else 0.0


@dataclass
class Story:
    """A story as the rule sees it: its id (the lead article's id), when it started, its summed members."""

    id: str
    first_seen: datetime
    centroid: dict[str, float] = field(default_factory=dict)

    def add(self, member: Mapping[str, float]) -> None:
        for key, weight in member.items():
            self.centroid[key] = self.centroid.get(key, 0.0) + weight


def choose(member: Mapping[str, float], published: datetime, stories: Iterable[Story]) -> Story | None:
    """The story this article joins, or None when it starts its own."""
    best, best_score = None, JOIN
    for story in stories:
        if abs(published - story.first_seen) >= WINDOW:
            continue
        score = cosine(member, story.centroid)
        if score >= best_score and (best is None or score > best_score or story.id < best.id):
            best, best_score = story, score
    return best


@dataclass(frozen=True)
class NewArticle:
    id: str
    published: datetime
    fingerprint: Fingerprint


@dataclass(frozen=True)
class Assignment:
    story_id: str
    first_seen: datetime

    def leads(self, article_id: str) -> bool:
        return self.story_id == article_id


def assign_batch(
    articles: Iterable[NewArticle], known: Iterable[Story], weights: EntityWeights
) -> dict[str, Assignment]:
    """Stories for a batch of new articles, oldest first, so a later one can join an earlier one."""
    stories = list(known)
    out: dict[str, Assignment] = {}
    for article in sorted(articles, key=lambda a: (a.published, a.id)):
        member = vector(article.fingerprint, weights)
        story = choose(member, article.published, stories)
        if story is None:
            story = Story(article.id, article.published)
            stories.append(story)
        story.add(member)
        out[article.id] = Assignment(story.id, story.first_seen)
    return out
