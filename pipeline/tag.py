"""Tag stage: entities, watch terms, keywords and a topic relevance verdict.

Text and watchlist names are normalised alike (NFKC, OpenCC t2s, lower case), so
one Aho-Corasick automaton finds 兩用物項, 两用物项, 軍民両用品目 and dual-use
items as the same entity.
"""

from __future__ import annotations

import bisect
import logging
import marshal
import os
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

import ahocorasick
import jieba

from pipeline.config import Settings
from pipeline.discover import Discoverer, load_discovery
from pipeline.models import Relevance, Tags, TextFacts
from pipeline.salience import Layout, Mention, evidence_text, witness
from pipeline.stories import story_marks
from pipeline.text import Segmenter, as_written, detect_script, normalise, normalise_mapped
from pipeline.watchlist import DISCOVERY_FILE, ENTITY_TYPES, Clause, Rule, Watchlist, load_watchlist

log = logging.getLogger(__name__)

KEYWORD_COUNT = 12
EVIDENCE_COUNT = 3  # sentences kept as `relevance.evidence`
_KATAKANA_RUN = re.compile(r"[\u30a0-\u30ffー]{3,}")
_KANJI_RUN = re.compile(r"[\u4e00-\u9fff]{2,6}")
_EN_WORD = re.compile(r"[a-z][a-z\-']{2,}")
_HAS_DIGIT = re.compile(r"\d")


class ClauseOutcome(StrEnum):
    MET = "met"
    TOO_FEW_MENTIONS = "too few mentions"
    NOT_SALIENT = "no salience condition holds"


@dataclass(frozen=True)
class ClauseCheck:
    clause: Clause
    mentions: list[Mention]  # of this clause's groups and ids, in text order
    outcome: ClauseOutcome
    shown: Mention | None  # the mention that met a salience condition

    @property
    def terms(self) -> list[str]:
        return sorted({m.entry_id for m in self.mentions})


class Tagger:
    """Everything loaded once per process: automaton, jieba, IDF table, stop words."""

    def __init__(self, watchlist: Watchlist, config_dir: Path, cache_dir: Path) -> None:
        self.watchlist = watchlist
        self.config_dir, self.cache_dir = config_dir, cache_dir  # what another process needs to build it again
        self._entries = watchlist.by_id()
        self._automaton = ahocorasick.Automaton()
        user_words = []
        for entry in watchlist.entries:
            for name in entry.names:
                key = normalise(name)
                self._automaton.add_word(key, (entry.id, len(key), key.isascii()))
                user_words.append(key)
        self._automaton.make_automaton()
        self.segmenter = Segmenter(user_words, cache_dir)
        self._idf, self._median_idf = _load_idf(cache_dir)
        self._stop = {lang: _read_words(config_dir / f"stopwords-{lang}.txt") for lang in ("zh", "en", "ja")}
        self.discoverer = Discoverer(
            load_discovery(config_dir / DISCOVERY_FILE), self.segmenter.tokenizer, self.covers_whole
        )

    def tag(self, title: str, body: str, facts: TextFacts | None = None) -> Tags:
        """Tag one article.

        Args:
            title: the article title.
            body: the article text, already cleaned of page clutter.
            facts: what an earlier tagging of this text read from it alone (see TextFacts); None reads it.

        Returns:
            Tags with entities, keywords, watch terms and relevance.
        """
        language, script = (facts.language, facts.script) if facts else detect_script(title + "\n" + body)
        text = f"{title}\n\n{body}"
        norm_text, offsets = normalise_mapped(text)
        found = self._find(norm_text)
        mentions = Counter(m.entry_id for m in found)
        layout = Layout(norm_text, title_end=bisect.bisect_left(offsets, len(title)))
        entities: dict[str, list[str]] = {t: [] for t in ENTITY_TYPES}
        for entry_id in sorted(mentions, key=lambda i: (-mentions[i], i)):
            entry = self._entries[entry_id]
            if entry.type in entities:
                entities[entry.type].append(entry_id)
        watch_terms = sorted(i for i in mentions if self._entries[i].watch)
        relevance = self._relevance(found, layout, text, offsets)
        return Tags(
            language=language,
            script=script,
            entities={t: ids for t, ids in entities.items() if ids},
            mentions=dict(sorted(mentions.items())),
            labels={i: self._entries[i].label for i in sorted(mentions)},
            keywords=facts.keywords if facts else self._written_keywords(language, title, text, norm_text, offsets),
            watch_terms=watch_terms,
            relevance=relevance,
            watchlist_version=self.watchlist.version,
            # Only where it pays: POS tagging costs several times the rest of tagging.
            discovered=self.discoverer.discover(text, norm_text, offsets, language) if relevance.relevant else [],
            story_marks=facts.story_marks if facts else story_marks(norm_text),
            title_entities=sorted({m.entry_id for m in found if m.start < layout.title_end}),
        )

    def _written_keywords(
        self, language: str, title: str, text: str, norm_text: str, offsets: Sequence[int]
    ) -> list[str]:
        """Chosen in one script, shown as the article writes them (輸出規制, not 输出规制)."""
        # The body's part of the normalised text (no OpenCC phrase spans the blank line): normalised once.
        norm_body = norm_text[bisect.bisect_left(offsets, len(title) + 2) :]
        return as_written(text, norm_text, offsets, self._keywords(language, norm_body))

    def _find(self, text: str) -> list[Mention]:
        """Leftmost-longest, non-overlapping gazetteer matches, in text order."""
        found = []
        for end, (entry_id, length, ascii_name) in self._automaton.iter(text):
            start = end - length + 1
            if ascii_name and not _word_bounded(text, start, end):
                continue
            found.append((start, -length, entry_id))
        mentions = []
        last_end = -1
        for start, neg_length, entry_id in sorted(found):
            if start > last_end:
                mentions.append(Mention(start=start, end=start - neg_length, entry_id=entry_id))
                last_end = start - neg_length - 1
        return mentions

    def covers_whole(self, name: str) -> bool:
        """True when watchlist names cover every letter of a normalised name (中国商务省 = 中国 + 商务省)."""
        covered = set()
        for mention in self._find(name):
            covered |= set(range(mention.start, mention.end))
        return all(i in covered for i, c in enumerate(name) if c.isalnum())

    def _relevance(self, found: list[Mention], layout: Layout, text: str, offsets: Sequence[int]) -> Relevance:
        matched_rules, matched_terms, score = [], set(), 0.0
        evidence: dict[str, None] = {}
        for rule in self.watchlist.rules:
            support = self._rule_support(rule, found, layout)
            if support is None:
                continue
            matched_rules.append(rule.id)
            score += rule.weight
            for clause_mentions, mention in support:
                matched_terms |= {m.entry_id for m in clause_mentions}
                if mention is not None:
                    evidence.setdefault(evidence_text(text, offsets, layout, mention))
        return Relevance(
            relevant=bool(matched_rules) and score >= self.watchlist.threshold,
            score=round(score, 3),
            matched_rules=matched_rules,
            matched_terms=sorted(matched_terms),
            evidence=[e for e in evidence if e][:EVIDENCE_COUNT],
        )

    def _rule_support(
        self, rule: Rule, found: list[Mention], layout: Layout
    ) -> list[tuple[list[Mention], Mention | None]] | None:
        """Per clause, its mentions and the one that shows its salience; None when the rule fails."""
        checks = self._clause_checks(rule, found, layout)
        if any(c.outcome is not ClauseOutcome.MET for c in checks):
            return None
        support = [(c.mentions, c.shown) for c in checks]
        if all(shown is None for _, shown in support):
            # No salience conditions: the first mention of the first clause shows why.
            support[0] = (support[0][0], support[0][0][0])
        return support

    def _clause_checks(self, rule: Rule, found: list[Mention], layout: Layout) -> list[ClauseCheck]:
        by_clause = {
            c.name: [m for m in found if m.entry_id in c.targets or c.targets & set(self._entries[m.entry_id].groups)]
            for c in rule.clauses
        }
        checks = []
        for clause in rule.clauses:
            own = by_clause[clause.name]
            shown = None
            if len(own) < clause.min_mentions:
                outcome = ClauseOutcome.TOO_FEW_MENTIONS
            elif not clause.any_of:
                outcome = ClauseOutcome.MET
            else:
                shown = next((w for c in clause.any_of if (w := witness(c, own, by_clause, layout))), None)
                outcome = ClauseOutcome.MET if shown else ClauseOutcome.NOT_SALIENT
            checks.append(ClauseCheck(clause=clause, mentions=own, outcome=outcome, shown=shown))
        return checks

    def explain(self, title: str, body: str) -> list[tuple[Rule, list[ClauseCheck]]]:
        """Each rule with how each of its clauses fared on one article (what `evaluate` prints)."""
        text = f"{title}\n\n{body}"
        norm_text, offsets = normalise_mapped(text)
        found = self._find(norm_text)
        layout = Layout(norm_text, title_end=bisect.bisect_left(offsets, len(title)))
        return [(rule, self._clause_checks(rule, found, layout)) for rule in self.watchlist.rules]

    def _keywords(self, language: str, norm_body: str) -> list[str]:
        if language == "ja":
            candidates = _KATAKANA_RUN.findall(norm_body) + _KANJI_RUN.findall(norm_body)
            return _top(Counter(w for w in candidates if w not in self._stop["ja"]))
        if language == "en":
            counts = Counter(w for w in _EN_WORD.findall(norm_body) if w not in self._stop["en"])
            return _top(counts)
        # TF-IDF with jieba's IDF table over our own (watchlist-aware) segmentation: the only
        # language that needs it (jieba walks every Latin letter too, most of an English article's time).
        tf = Counter(
            w
            for w in self.segmenter.words(norm_body)
            if len(w) >= 2 and w not in self._stop["zh"] and not _HAS_DIGIT.search(w) and not w.isascii()
        )
        scored = Counter({w: n * self._idf.get(w, self._median_idf) for w, n in tf.items()})
        return _top(scored)


def _top(scores: Counter[str]) -> list[str]:
    return [w for w, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:KEYWORD_COUNT]]


def _word_bounded(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start > 0 else " "
    after = text[end + 1] if end + 1 < len(text) else " "
    return not (before.isascii() and before.isalnum()) and not (after.isascii() and after.isalnum())


def _load_idf(cache_dir: Path) -> tuple[dict[str, float], float]:
    """jieba's IDF table and its median, read directly (importing jieba.analyse also loads its POS
    tagger, ~2.5 s) and kept in `cache_dir` as marshal data: parsing the table's 350,000 lines took
    0.28 s of CPU of every tagger's start, the pool's forkserver's included."""
    path = Path(jieba.__file__).parent / "analyse" / "idf.txt"
    stat = path.stat()
    cached = cache_dir / f"jieba-idf-{stat.st_size}-{stat.st_mtime_ns}.marshal"
    try:
        idf, median = marshal.loads(cached.read_bytes())  # noqa: S302 - our own cache file, as jieba's is
    except (OSError, EOFError, ValueError, TypeError):  # absent, cut short, or another Python's marshal
        idf = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            word, _, value = line.rpartition(" ")
            if word:
                idf[word] = float(value)
        median = sorted(idf.values())[len(idf) // 2]
        # Written aside, then renamed: a process reading meanwhile sees the whole file or none.
        partial = cache_dir / f"{cached.name}.{uuid.uuid4().hex}"
        try:
            partial.write_bytes(marshal.dumps((idf, median)))
            os.replace(partial, cached)
        except OSError as exc:  # only slower: the next tagger parses the table again
            log.warning("cannot cache jieba's IDF table in %s: %s", cache_dir, exc)
    return idf, median


def _read_words(path: Path) -> frozenset[str]:
    if not path.is_file():
        return frozenset()
    return frozenset(
        normalise(line.strip())
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )


@lru_cache(maxsize=4)
def _cached_tagger(watchlist_path: Path, mtimes: tuple[int, int], config_dir: Path, cache_dir: Path) -> Tagger:
    del mtimes  # part of the cache key: an edited watchlist or discovery file builds a new tagger
    tagger = Tagger(load_watchlist(watchlist_path), config_dir, cache_dir)
    log.info("tagger ready: %d entries, watchlist %s", len(tagger.watchlist.entries), tagger.watchlist.version)
    return tagger


def get_tagger(settings: Settings) -> Tagger:
    """The process-wide tagger for the configured watchlist."""
    path = settings.config_file("watchlist.yaml").resolve()
    discovery = settings.config_file(DISCOVERY_FILE)
    mtimes = (path.stat().st_mtime_ns, discovery.stat().st_mtime_ns if discovery.is_file() else 0)
    return _cached_tagger(path, mtimes, settings.config_dir, settings.cache_dir)
