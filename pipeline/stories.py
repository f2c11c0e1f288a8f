"""Stories: articles that report the same event, in any script or language.

An article's fingerprint is what survives translation: its canonical entity ids (with their
mention counts), the numbers it gives (1005 items, 20 entities) and the calendar days it
names (6日, 1月6日, 6 January, Jan. 6), each resolved against the article's own publication
date, so that 6日 in a report of 7 January and "January 6" in one of 8 January are the same
mark, d:2026-01-06, and the 6th of another month is not. Simplified and traditional Chinese,
Japanese and English texts of one event share them, because the tagger maps every name to
one id and the normalisation folds scripts and full-width digits before marks are read.

The rule: an article joins the story whose members, summed (each scaled to length one), are
most similar to it, if that story started within WINDOW of the article, its news is of the same day (or the next), the
similarity reaches JOIN and the article's mean plain cosine with the members reaches MEMBERS;
otherwise it starts a story of its own and leads it. Similarity is the cosine of weighted
fingerprints over the entities, the entities its title names (a headline names the event's
subject: the ban of dual-use items, the rare-earth curbs) and the marks both name: a number or
date only one of them gives says nothing; the mean over the members counts everything, so that a story grown broad
does not take an article that matches only a few of its facts. Entities that most articles
mention (Japan, China) weigh little: each is weighted by its inverse document frequency among
recent articles. A shared number or date weighs as much as a rare entity. An article's news date is the latest day it
names up to its publication: an article whose news is more than a day from every member's is
a new act (a reaction, an answer), its own story even when it recaps the first one's figures.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

WINDOW = timedelta(days=4)  # an article joins only stories that started less than this far from it
JOIN = 0.6  # similarity to a story's summed fingerprint, on what both name, needed to join it
MEMBERS = 0.15  # mean cosine with the story's members, on everything each names, needed too
NEWS_APART = timedelta(days=1)  # a story's news and the next day's protest are one; two days apart, two
MARK_WEIGHT = 6.8  # weight of one number or date: as much as an entity in few articles
# Features compared whether or not both articles name them: entities (e:) and the entities of
# the title (t:), which names the event's subject. Numbers and dates count only where both name them.
_NAMED = ("e:", "t:")
# A date named without its year is the latest one up to this long after publication: news
# looks back, or ahead to a day already set (a rule taking effect, a summit).
AHEAD = timedelta(days=60)

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# Whole names or their abbreviations: "10 markets" and "Dec. 1" are not alike.
_MONTH = "january|february|march|april|june|july|august|september|sept|october|november|december|" + "|".join(_MONTHS)
# Most specific first: the span of a full date is not read again as a shorter one.
_DATE_PATTERNS = (
    re.compile(r"(?<!\d)(?P<y>\d{4})\s*年\s*(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*日"),  # 2026年1月6日
    re.compile(r"(?<!\d)(?P<y>(?:19|20)\d\d)[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})(?!\d)"),  # 2026-01-06
    re.compile(rf"\b(?P<mon>{_MONTH})\b\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<y>\d{{4}})\b)?"),
    re.compile(rf"(?<!\d)(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?P<mon>{_MONTH})\b(?:,?\s+(?P<y>\d{{4}})\b)?"),
    re.compile(r"(?<!\d)(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*日"),  # 1月6日
    re.compile(r"(?<!\d)(?P<d>\d{1,2})\s*日"),  # 6日: a day of a month the reader knows
)
_NUMBER = re.compile(r"(?<![\d.,])\d[\d,]*(?:\.\d+)?(?!\d)")


def story_marks(normalised_text: str) -> list[str]:
    """Numbers and dates an article names, from normalise()d text, before its date is known.

    Dates as written: date:2026-1-6 with a year, date:1-6 without, date:6 for a day alone;
    event_marks() resolves them. The digits of a date are not numbers too. A number of one
    digit says too little; a year (1900–2100) names no event, only its era.
    """
    marks: set[str] = set()
    taken: list[tuple[int, int]] = []
    for pattern in _DATE_PATTERNS:
        for found in pattern.finditer(normalised_text):
            if any(start <= found.start() < end for start, end in taken):
                continue
            taken.append(found.span())
            parts = found.groupdict()
            month = parts.get("m") or (str(_MONTHS.index(parts["mon"][:3]) + 1) if parts.get("mon") else None)
            marks.add("date:" + "-".join(p for p in (parts.get("y"), month, parts["d"]) if p))
    for found in _NUMBER.finditer(normalised_text):
        value = found.group().replace(",", "")
        if any(start <= found.start() < end for start, end in taken):
            continue
        if "." not in value and (len(value) < 2 or (len(value) == 4 and 1900 <= int(value) <= 2100)):
            continue
        marks.add(f"n:{value}")
    return sorted(marks)


def event_marks(marks: Iterable[str], published: date) -> frozenset[str]:
    """story_marks() with each date as the calendar day it names (d:2026-01-06), read from the
    article's publication day; a date that names no real day is left out."""
    out = set()
    for mark in marks:
        if not mark.startswith("date:"):
            out.add(mark)
        elif (day := _resolve([int(p) for p in mark[5:].split("-")], published)) is not None:
            out.add(f"d:{day.isoformat()}")
    return frozenset(out)


def _resolve(parts: list[int], published: date) -> date | None:
    if len(parts) == 3:
        return _day(*parts)
    if len(parts) == 2:  # the year is the latest that puts the day no later than AHEAD
        days = [d for y in (published.year + 1, published.year, published.year - 1) if (d := _day(y, *parts))]
        return next((d for d in days if d <= published + AHEAD), None)
    # A day alone is of this month or one just past; "6日" in a report of 5 January, in a later
    # time zone, is the 6th: the day after publication still counts.
    latest = published + timedelta(days=1)
    year, month = latest.year, latest.month
    for _ in range(3):
        if (day := _day(year, month, parts[0])) and day <= latest:
            return day
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return None


def _day(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


@dataclass(frozen=True)
class Fingerprint:
    entities: Mapping[str, int]  # canonical entity id -> mentions
    marks: frozenset[str]
    news_date: date | None = None  # the latest day it names up to its publication: its news
    title_entities: frozenset[str] = frozenset()  # the entities its title names

    def terms(self) -> list[str]:
        """As the keywords of a document's `story_fingerprint`: e:japan=3, t:dual_use_items, n:1005,
        d:2026-01-06, news:2026-01-06."""
        news = [f"news:{self.news_date.isoformat()}"] if self.news_date else []
        titled = [f"t:{e}" for e in self.title_entities]
        return sorted([f"e:{e}={n}" for e, n in self.entities.items()] + titled + list(self.marks) + news)

    @classmethod
    def of_terms(cls, terms: Iterable[str]) -> Fingerprint:
        entities, marks, news, titled = {}, set(), None, set()
        for term in terms:
            if term.startswith("e:"):
                entity, _, count = term[2:].rpartition("=")
                entities[entity] = int(count)
            elif term.startswith("t:"):
                titled.add(term[2:])
            elif term.startswith("news:"):
                news = date.fromisoformat(term[5:])
            else:
                marks.add(term)
        return cls(entities, frozenset(marks), news, frozenset(titled))

    @classmethod
    def of_article(
        cls,
        mentions: Mapping[str, int],
        marks: Iterable[str],
        published: datetime | None,
        title_entities: Iterable[str] = (),
    ) -> Fingerprint:
        """An article's fingerprint: its tags' mentions, marks and title entities, dates read from its
        publication day (without one, its dates say nothing)."""
        titled = frozenset(title_entities)
        if published is None:
            return cls(dict(mentions), frozenset(m for m in marks if not m.startswith("date:")), None, titled)
        resolved = event_marks(marks, published.date())
        day = published.date()
        named = [date.fromisoformat(m[2:]) for m in resolved if m.startswith("d:")]
        news = max((d for d in named if day - WINDOW < d <= day), default=None)
        return cls(dict(mentions), resolved, news, titled)


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
    # A headline names what happened: reports of one event headline the same subject.
    out.update((f"t:{e}", weights.idf(e)) for e in fp.title_entities)
    out.update((m, MARK_WEIGHT) for m in fp.marks)
    return out


def cosine(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    dot = sum(w * b.get(k, 0.0) for k, w in a.items())
    norms = math.sqrt(sum(w * w for w in a.values())) * math.sqrt(sum(w * w for w in b.values()))
    return dot / norms if norms else 0.0


@dataclass
class Story:
    """A story as the rule sees it: its id (the lead article's id), when it started, its members
    (and their sum) and the days of their news."""

    id: str
    first_seen: datetime
    centroid: dict[str, float] = field(default_factory=dict)
    news_dates: set[date] = field(default_factory=set)
    entity_norm: float = 0.0  # sum of the squared weights of the centroid's entities and title entities
    members: list[Mapping[str, float]] = field(default_factory=list)

    def add(self, member: Mapping[str, float], news_date: date | None) -> None:
        self.members.append(member)
        # Each report counts once, however long: a long explainer does not outweigh three short reports.
        norm = math.sqrt(sum(w * w for w in member.values())) or 1.0
        for key, weight in member.items():
            self.centroid[key] = self.centroid.get(key, 0.0) + weight / norm
        self.entity_norm = sum(w * w for k, w in self.centroid.items() if k.startswith(_NAMED))
        if news_date:
            self.news_dates.add(news_date)

    def similarity(self, member: Mapping[str, float]) -> float:
        """Cosine over the entities, and over the numbers and dates both name: reports of one
        event quote different figures, so a number only one of them gives says nothing either way."""
        dot = own = theirs = 0.0
        for key, weight in member.items():
            other = self.centroid.get(key)
            if key.startswith(_NAMED):
                own += weight * weight
            elif other is None:
                continue
            else:
                own += weight * weight
                theirs += other * other
            dot += weight * (other or 0.0)
        norms = math.sqrt(own * (self.entity_norm + theirs))
        return dot / norms if norms else 0.0

    def near_members(self, member: Mapping[str, float]) -> bool:
        """True when the article's mean cosine with the members reaches MEMBERS: a story grown
        broad on many reports' facts does not take an article that matches only a few of them."""
        return sum(cosine(member, m) for m in self.members) >= MEMBERS * len(self.members)

    def other_news(self, news_date: date | None) -> bool:
        """True when an article's news is of another day than every member's: a new act some days
        later (a reaction, an answer) is a story of its own, a same- or next-day one is not."""
        if news_date is None or not self.news_dates:
            return False
        return all(abs(news_date - d) > NEWS_APART for d in self.news_dates)


def choose(member: Mapping[str, float], article: NewArticle, stories: Iterable[Story]) -> Story | None:
    """The story this article joins, or None when it starts its own."""
    best, best_score = None, JOIN
    for story in stories:
        if abs(article.published - story.first_seen) >= WINDOW or story.other_news(article.fingerprint.news_date):
            continue
        score = story.similarity(member)
        if score < best_score or not story.near_members(member):
            continue
        if best is None or score > best_score or story.id < best.id:
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
        story = choose(member, article, stories)
        if story is None:
            story = Story(article.id, article.published)
            stories.append(story)
        story.add(member, article.fingerprint.news_date)
        out[article.id] = Assignment(story.id, story.first_seen)
    return out
