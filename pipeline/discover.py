"""Names beyond the watchlist: people, organisations and places an article names.

Chinese text goes through jieba's part-of-speech tagger (nr/ns/nt/nz), Japanese through the
shape of its text (kanji/katakana runs ending in a company or body suffix, katakana names),
Latin script through capitalised sequences and corporate suffixes. Suffix lists, titles and
stop names live in config/discovery.yaml. jieba.posseg's HMM costs several times plain
segmentation, so discovery runs on relevant articles only, and there posseg tags only the
words plain segmentation found outside jieba's dictionary.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import jieba
import yaml

from pipeline.config import ConfigError
from pipeline.models import DiscoveredName, NameType
from pipeline.text import normalise

POS_TYPES = {"nr": NameType.PERSON, "nrfg": NameType.PERSON, "nrt": NameType.PERSON, "ns": NameType.PLACE}
POS_TYPES |= {"nt": NameType.ORGANISATION, "nz": NameType.OTHER}
MAX_STEM_WORDS = 6  # 三菱 重工 海洋 机械 | 株式会社
# Parts of speech a name's stem may be built of, before an organisation suffix.
_STEM_POS = ("n", "j", "eng", "vn", "nr", "ns", "nt", "nz", "nrt", "nrfg")
# Kanji, katakana (without the middle dot ・, which joins a title to a name) and Latin.
_JA_RUN = re.compile(r"[\u4e00-\u9fff\u30a1-\u30fa\u30fc-\u30ffa-z0-9&]+")
_KATAKANA = re.compile(r"[\u30a1-\u30fa\u30fc-\u30ff]+(?:・[\u30a1-\u30fa\u30fc-\u30ff]+)*")
_LATIN_WORD = re.compile(r"(?<![A-Za-z0-9])(?:[A-Z][A-Za-z0-9&\-]*\.?|[a-z]+|&)(?![A-Za-z0-9])")
_SENTENCE_START = re.compile(r"(^|[.!?。！？:：]\s*|\n)\s*[\"“'‘(（「]?$")

HEADING_WORDS = 8
UNKNOWN_WORDS_CACHED = 20_000  # unknown words tagged per process (names recur across articles)
_HAN_WORD = re.compile(r"[\u4e00-\u9fd5]{2,}")
# A name found at [start, end) of the text it was searched in, with its type.
Found = tuple[int, int, NameType]
Coverage = Callable[[str], bool]  # True when watchlist names cover a normalised name whole


@dataclass(frozen=True)
class DiscoveryConfig:
    zh_min_chars: dict[str, int]
    zh_unknown_only: frozenset[str]
    zh_known_only: frozenset[str]
    zh_org_suffixes: frozenset[str]
    zh_person_titles: tuple[str, ...]
    zh_surnames: frozenset[str]
    ja_org_suffixes: tuple[str, ...]
    ja_org_prefixes: tuple[str, ...]
    ja_person_titles: tuple[str, ...]
    ja_min_katakana: int
    ja_trailing: tuple[str, ...]
    en_org_suffixes: frozenset[str]
    en_person_titles: frozenset[str]
    en_connectors: frozenset[str]
    en_not_names: frozenset[str]
    stop_names: frozenset[str]
    boilerplate: tuple[re.Pattern[str], ...]


def load_discovery(path: Path) -> DiscoveryConfig:
    """config/discovery.yaml, checked; errors name the file and the key."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot be read as YAML: {exc}") from exc

    def words(section: str, key: str) -> list[str]:
        value = (raw.get(section) or {}).get(key) if section else raw.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
            raise ConfigError(f"{path}: {section + '.' if section else ''}{key} must be a list of strings")
        return [str(v) for v in value]

    def by_length(items: list[str]) -> tuple[str, ...]:  # longest first: 重工業 before 工業
        return tuple(sorted({normalise(s) for s in items}, key=len, reverse=True))

    try:
        boilerplate = tuple(re.compile(p) for p in words("", "boilerplate"))
    except re.error as exc:
        raise ConfigError(f"{path}: boilerplate: not a regular expression: {exc}") from exc
    min_chars = (raw.get("zh") or {}).get("min_chars") or {}
    if not isinstance(min_chars, dict) or set(min_chars) - set(POS_TYPES):
        raise ConfigError(f"{path}: zh.min_chars maps {', '.join(POS_TYPES)} to numbers")
    return DiscoveryConfig(
        zh_min_chars={str(k): int(v) for k, v in min_chars.items()},
        zh_unknown_only=frozenset(words("zh", "unknown_words_only")),
        zh_known_only=frozenset(words("zh", "known_words_only")),
        zh_org_suffixes=frozenset(normalise(s) for s in words("zh", "organisation_suffixes")),
        zh_person_titles=by_length(words("zh", "person_titles")),
        zh_surnames=frozenset(normalise(s) for s in "".join(words("zh", "surnames"))),
        ja_org_suffixes=by_length(words("ja", "organisation_suffixes")),
        ja_org_prefixes=by_length(words("ja", "organisation_prefixes")),
        ja_person_titles=by_length(words("ja", "person_titles")),
        ja_min_katakana=int((raw.get("ja") or {}).get("min_katakana", 3)),
        ja_trailing=by_length(words("ja", "trailing")),
        en_org_suffixes=frozenset(words("en", "organisation_suffixes")),
        en_person_titles=frozenset(words("en", "person_titles")),
        en_connectors=frozenset(words("en", "connectors")),
        en_not_names=frozenset(words("en", "not_names")),
        stop_names=frozenset(normalise(s) for s in words("", "stop_names")),
        boilerplate=boilerplate,
    )


class Discoverer:
    """Finds names in one article's text; the POS tagger is loaded on first use."""

    def __init__(self, config: DiscoveryConfig, tokenizer: jieba.Tokenizer, covered: Coverage) -> None:
        self.config = config
        self._tokenizer = tokenizer
        self._covered = covered
        self._tag_unknown = lru_cache(maxsize=UNKNOWN_WORDS_CACHED)(self._posseg)
        # Wraps the POS model's load: a worker stops its page's deadline there.
        self.loading_model: Callable[[], AbstractContextManager[None]] = nullcontext

    @cached_property
    def _pos(self) -> Any:
        # Imported here: loading jieba.posseg's model takes ~2.5 s (over 15 s at load 16 on 2 cores),
        # paid only by the first relevant article of a process; most articles are not relevant.
        with self.loading_model():
            import jieba.posseg

            return jieba.posseg.POSTokenizer(self._tokenizer)

    def discover(self, text: str, norm_text: str, offsets: Sequence[int], language: str) -> list[DiscoveredName]:
        """Names in `text` (title and body) that the watchlist does not know, most mentioned first.

        `norm_text` and `offsets` come from normalise_mapped(text); names are reported as the
        article writes them, counted over all their spellings.
        """
        counts: dict[str, list[Any]] = {}  # normalised name -> [as written, type, count]
        for start, end, kind in self._found(text, norm_text, offsets, language):
            written = " ".join(text[start:end].split()).strip(" .,;:()（）「」『』\"'“”‘’")
            key = normalise(written)
            if not self._keep(key, written):
                continue
            slot = counts.setdefault(key, [written, kind, 0])
            slot[2] += 1
        ranked = sorted(counts.values(), key=lambda s: (-s[2], s[0]))
        return [DiscoveredName(name=name, type=kind, count=count) for name, kind, count in ranked]

    def _found(self, text: str, norm_text: str, offsets: Sequence[int], language: str) -> Iterator[Found]:
        """Every occurrence, as spans of the original text."""
        nfkc = unicodedata.normalize("NFKC", text)
        if len(nfkc) == len(text):  # spans of the NFKC text are spans of the original
            yield from self._latin(nfkc)
        skip = self._boilerplate_spans(norm_text)
        if language == "zh":
            spans = self._chinese(norm_text)
        elif language == "ja":
            spans = self._japanese(norm_text)
        else:
            return
        for start, end, kind in spans:
            if end > start and not any(lo <= start < hi for lo, hi in skip):
                yield offsets[start], offsets[end - 1] + 1, kind

    def _keep(self, key: str, written: str) -> bool:
        if len(key) < 2 or key in self.config.stop_names or not any(c.isalpha() for c in key):
            return False
        if written.isascii() and " " not in written and written.isupper() and len(written) < 3:
            return False
        return not self._covered(key)

    def _boilerplate_spans(self, norm_text: str) -> list[tuple[int, int]]:
        spans, at = [], 0
        for paragraph in norm_text.split("\n"):
            if any(p.search(paragraph) for p in self.config.boilerplate):
                spans.append((at, at + len(paragraph)))
            at += len(paragraph) + 1
        return spans

    def forget(self) -> None:
        """Drop the tagged unknown words (a benchmark measures each article cold)."""
        self._tag_unknown.cache_clear()

    def pos_tags(self, norm_text: str) -> Iterator[tuple[int, str, str]]:
        """(offset, word, part of speech) for each word of jieba's plain segmentation.

        A dictionary word takes its dictionary tag, as posseg gives it; only a word its HMM
        found (毛宁, 何咏前) goes through posseg, alone: posseg's own HMM over every run of
        unknown characters (2026年, 现将, 是指 …) was most of discovery's CPU.
        """
        tags = self._pos.word_tag_tab
        at = 0
        for word in self._tokenizer.cut(norm_text):
            if _HAN_WORD.fullmatch(word) and not self._tokenizer.FREQ.get(word):
                for part, flag in self._tag_unknown(word):
                    yield at, part, flag
                    at += len(part)
                continue
            plain = word.isascii() and word.isalnum()
            yield at, word, ("m" if word.isdigit() else "eng") if plain else tags.get(word, "x")
            at += len(word)

    def _posseg(self, word: str) -> tuple[tuple[str, str], ...]:
        return tuple((pair.word, pair.flag) for pair in self._pos.cut(word))

    def _chinese(self, norm_text: str) -> Iterator[Found]:
        """jieba.posseg names; a noun run ending in an organisation suffix is one organisation."""
        tokens = list(self.pos_tags(norm_text))
        used: set[int] = set()
        # A name established after a title counts wherever the article writes it (何咏前面对).
        titled = sorted({norm_text[lo:hi] for lo, hi in self._titled_names(norm_text)}, key=len, reverse=True)
        spans = [(m.start(), m.end()) for m in re.finditer("|".join(titled), norm_text)] if titled else []
        for start, end in spans:
            yield start, end, NameType.PERSON
        for i, token in enumerate(tokens):
            if any(lo <= token[0] < hi for lo, hi in spans):
                used.add(i)  # 何咏 and 亚东, the segmenter's pieces of 何咏前 and 何亚东
        for i, (start, word, _flag) in enumerate(tokens):
            if word in self.config.zh_org_suffixes and i not in used:
                stem = self._stem(tokens, i)
                if stem:
                    used |= set(range(stem[0], i + 1))
                    yield tokens[stem[0]][0], start + len(word), NameType.ORGANISATION
        for i, (start, word, flag) in enumerate(tokens):
            kind = POS_TYPES.get(flag)
            if kind is None or i in used or len(word) < self.config.zh_min_chars.get(flag, 2):
                continue
            known = bool(self._tokenizer.FREQ.get(word))
            if (known and flag in self.config.zh_unknown_only) or (not known and flag in self.config.zh_known_only):
                continue
            if word in self.config.zh_org_suffixes:  # a lone 株式会社
                continue
            yield start, start + len(word), kind

    def _titled_names(self, norm_text: str) -> Iterator[tuple[int, int]]:
        """People named right after a title (发言人何咏前, 发言人何亚东 …), as [start, end).

        jieba cuts many three-character names short (何咏 + 前, 何 + 亚东), so the length
        comes from the text: three characters unless the third starts a dictionary word
        (林剑表示) or the article also writes the first two followed by something else
        (毛宁今 beside 毛宁表示); the name must start with a surname.
        """
        freq = self._tokenizer.FREQ
        tags = self._pos.word_tag_tab
        for title in self.config.zh_person_titles:
            for match in re.finditer(re.escape(title), norm_text):
                at = match.end()
                name = norm_text[at : at + 3]
                if len(name) < 2 or not _HAN_WORD.fullmatch(name[:2]) or name[0] not in self.config.zh_surnames:
                    continue
                if freq.get(name[:2]) and not tags.get(name[:2], "").startswith("nr"):
                    continue  # 周二, 同日: a word, no name
                if any(freq.get(norm_text[at : at + n]) for n in (4, 5, 6)):
                    continue  # 高市早苗, a longer known (or watchlist) name
                third = len(name) == 3 and _HAN_WORD.fullmatch(name)
                if third and any(freq.get(norm_text[at + 2 : at + n]) for n in (4, 5)):
                    third = None
                if third and re.search(re.escape(name[:2]) + f"(?!{re.escape(name[2])})", norm_text):
                    third = None
                yield at, at + (3 if third else 2)

    def _stem(self, tokens: list[tuple[int, str, str]], suffix: int) -> tuple[int, int] | None:
        """The tokens before an organisation suffix that name it (at least one a proper noun)."""
        first = suffix
        while first > 0 and suffix - first < MAX_STEM_WORDS and tokens[first - 1][2].startswith(_STEM_POS):
            first -= 1
        proper = any(
            (tokens[j][2] in POS_TYPES or tokens[j][2] == "eng") and not self._covered(tokens[j][1])
            for j in range(first, suffix)
        )
        return (first, suffix) if proper else None

    def _japanese(self, norm_text: str) -> Iterator[Found]:
        """Runs of kanji, katakana and Latin between particles and punctuation, by their shape."""
        cfg = self.config
        for run in _JA_RUN.finditer(norm_text):
            start = run.start()
            word = _strip_end(run.group(), cfg.ja_trailing)
            if len(word) < 2 or self._covered(word):
                continue
            lead = _prefix(word, cfg.ja_org_prefixes)
            if lead and len(word) > len(lead):
                yield start, start + len(word), NameType.ORGANISATION  # 株式会社subaru
                continue
            org_end = _suffix_end(word, cfg.ja_org_suffixes)
            if org_end:
                yield start, start + org_end, NameType.ORGANISATION
                continue
            title = next((t for t in cfg.ja_person_titles if word.endswith(t) and len(word) > len(t) + 1), None)
            if title:
                yield start, start + len(word) - len(title), NameType.PERSON
        for kana in _KATAKANA.finditer(norm_text):
            name, at = kana.group(), kana.start()
            quoted = norm_text[at - 1 : at] == "「" and norm_text[kana.end() : kana.end() + 1] == "」"
            if len(name.replace("・", "")) >= cfg.ja_min_katakana and ("・" in name or quoted):
                yield at, kana.end(), NameType.PERSON if "・" in name else NameType.OTHER

    def _latin(self, text: str) -> Iterator[Found]:
        """Capitalised sequences; organisations by their suffix, people by the title before them."""
        cfg = self.config
        at = 0
        for line in text.split("\n"):
            words = list(_LATIN_WORD.finditer(line))
            if not _headline(line, words):  # Title Case lines and headings capitalise every word
                for first, last in _capitalised_runs(line, words, cfg):
                    start, end = words[first].start(), words[last].end()
                    keep_dot = _abbreviation(words[last].group(), cfg)
                    name = line[start:end] if keep_dot else line[start:end].rstrip(".")
                    tail = words[last].group().rstrip(".")
                    joined = first and _adjacent(line, words[first - 1], words[first])
                    before = words[first - 1].group() if joined else ""
                    if first == last and not _single_name(line, words[first], text):
                        continue
                    if tail in cfg.en_org_suffixes:
                        kind = NameType.ORGANISATION
                    elif before in cfg.en_person_titles:
                        kind = NameType.PERSON
                    else:
                        kind = NameType.OTHER
                    yield at + start, at + start + len(name), kind
            at += len(line) + 1


def _capitalised(word: str, cfg: DiscoveryConfig) -> bool:
    bare = word.rstrip(".")
    if not bare or not bare[0].isupper() or bare in cfg.en_not_names or bare in cfg.en_person_titles:
        return False
    if any(c.isdigit() for c in bare):  # model numbers (B-52, F-15) name no one
        return False
    return all(part[:1].isupper() for part in bare.split("-"))  # not "China-made"


def _abbreviation(word: str, cfg: DiscoveryConfig) -> bool:
    """A word whose final "." is part of it (Co., Corp., U.S.), not a sentence's end."""
    return word in cfg.en_org_suffixes or word in cfg.en_person_titles or word.count(".") > 1 or len(word) == 2


def _capitalised_runs(line: str, words: list[re.Match[str]], cfg: DiscoveryConfig) -> Iterator[tuple[int, int]]:
    """(first, last) word indexes of each capitalised sequence; connectors only inside."""
    i = 0
    while i < len(words):
        if not _capitalised(words[i].group(), cfg):
            i += 1
            continue
        last = j = i
        while not (words[j].group().endswith(".") and not _abbreviation(words[j].group(), cfg)):
            j += 1
            if j == len(words) or not _adjacent(line, words[j - 1], words[j]):
                break
            w = words[j].group()
            if _capitalised(w, cfg) or w.rstrip(".") in cfg.en_org_suffixes:
                last = j
            elif w not in cfg.en_connectors:
                break
        last = _listed(line, words, i, last, cfg)
        if not (i == last and words[i].group().rstrip(".") in cfg.en_org_suffixes):  # a lone "Ltd"
            yield i, last
        i = last + 1


def _listed(line: str, words: list[re.Match[str]], first: int, last: int, cfg: DiscoveryConfig) -> int:
    """Extend a name over a list of its parts: "Ministry of Economy, Trade and Industry",
    "Economy, Trade and Industry Ministry". Only after "of" or before an organisation suffix,
    so "Sony, Panasonic and Toyota" stays three names."""

    def sep(k: int) -> str:
        return line[words[k].end() : words[k + 1].start()] if k + 1 < len(words) else ""

    j = last
    while sep(j) == ", " and j + 1 < len(words) and _capitalised(words[j + 1].group(), cfg):
        j += 1
    listed = j > last
    if not (sep(j) == " " and j + 2 < len(words) and words[j + 1].group() == "and" and sep(j + 1) == " "):
        return last
    if not _capitalised(words[j + 2].group(), cfg):
        return last
    j += 2
    while sep(j) == " " and j + 1 < len(words) and _capitalised(words[j + 1].group(), cfg):
        j += 1
    has_of = any(words[k].group() == "of" for k in range(first, last + 1))
    return j if has_of or (listed and words[j].group().rstrip(".") in cfg.en_org_suffixes) else last


def _headline(line: str, words: list[re.Match[str]]) -> bool:
    """A heading: a short Latin-only line without a sentence's end, or a Title Case line."""
    stripped = line.strip()
    if stripped.isascii() and 0 < len(words) <= HEADING_WORDS and not stripped.endswith((".", "!", "?", '"', "”")):
        return True
    long_words = [w.group() for w in words if len(w.group()) > 3]
    return len(long_words) >= 4 and sum(w[0].isupper() for w in long_words) >= 0.8 * len(long_words)


def _single_name(line: str, word: re.Match[str], text: str) -> bool:
    """One capitalised word is a name unless it opens a sentence or the text also writes it in lower case."""
    bare = word.group().rstrip(".")
    if bare.isupper() and len(bare) >= 3:
        return True
    if word.start() == 0 or _SENTENCE_START.search(line[max(0, word.start() - 4) : word.start()]):
        return False
    return re.search(rf"(?<![A-Za-z]){re.escape(bare.lower())}(?![A-Za-z])", text) is None


def _adjacent(text: str, a: re.Match[str], b: re.Match[str]) -> bool:
    """Two words separated by one space only (no punctuation, no line break)."""
    return text[a.end() : b.start()] == " "


def _prefix(word: str, affixes: tuple[str, ...]) -> str:
    return next((a for a in affixes if word.startswith(a)), "")


def _suffix_end(word: str, suffixes: tuple[str, ...]) -> int:
    """Where the last organisation suffix of a run ends, when a stem that is no suffix itself
    precedes it (電気自動車 is a car, not a company); else 0."""
    best = 0
    for suffix in suffixes:
        at = word.rfind(suffix)
        if at > 0 and at + len(suffix) > best and word[:at] not in suffixes:
            best = at + len(suffix)
    return best


def _strip_end(word: str, endings: tuple[str, ...]) -> str:
    ending = next((e for e in endings if word.endswith(e)), "")
    return word[: len(word) - len(ending)]
