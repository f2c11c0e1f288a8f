"""Script detection, normalisation to simplified Chinese, and word segmentation.

Documents and queries go through the same functions, so a search for 兩用物項
finds 两用物项: both become the same simplified, segmented words.
"""

from __future__ import annotations

import difflib
import logging
import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import jieba
import jieba_fast
import opencc

jieba.setLogLevel(logging.WARNING)
jieba_fast.setLogLevel(logging.WARNING)

_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_WORDISH = re.compile(r"\w", re.UNICODE)
# A run of what jieba segments as words (its re_han_default) that jieba-fast would cut otherwise:
# - with "-": jieba 0.39, which jieba-fast is, ended runs there (0.42 keeps f-35战机 whole);
# - with a character three times (买买买): of two equally likely routes (买买 + 买, 买 + 买买) jieba
#   takes the one with the longer first word, jieba-fast the shorter. Other ties need two words of
#   exactly the same frequency to overlap (上划上 when 上划 and 划上 are): never seen in real text;
# - past 256 characters: jieba-fast keeps an int object per position and CPython shares only those
#   up to 256, so a longer run (a base64 blob, an unpunctuated page) would leak 32 bytes a character.
_RUN_CHAR = jieba.re_han_default.pattern.strip("()+")
_JIEBA_ONLY_RUN = re.compile(
    rf"(?<!{_RUN_CHAR}){_RUN_CHAR}*(?:-|({_RUN_CHAR})\1\1){_RUN_CHAR}*(?!{_RUN_CHAR})"
    rf"|(?<!{_RUN_CHAR}){_RUN_CHAR}{{257,}}(?!{_RUN_CHAR})"
)


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    return str(_t2s().convert(text))


# Non-breaking and Unicode hyphens that NFKC keeps: "dual‑use" must match "dual-use".
_HYPHENS = str.maketrans({"\u2010": "-", "\u2011": "-"})
# Halfwidth katakana voicing marks: not combining in Unicode, but NFKC joins them to the kana before.
_HALFWIDTH_MARKS = "\uff9e\uff9f"
_CAPITAL_SIGMA = "\u03a3"  # lowered to ς at a word's end, σ elsewhere


def normalise(text: str) -> str:
    """The form both names and texts take before matching: NFKC, simplified, lower case."""
    return to_simplified(unicodedata.normalize("NFKC", text).translate(_HYPHENS)).lower()


def normalise_mapped(text: str) -> tuple[str, Sequence[int]]:
    """normalise(), with the offset in `text` of every character of the result.

    Highlights and evidence are cut from the original text through this map, so a reader
    sees 輸出規制 and "Export Controls" as written, never the normalised form.
    """
    distinct = set(text)
    nfkc, offsets = _folded(text, distinct)
    simplified = to_simplified(nfkc)
    if len(simplified) != len(nfkc):
        # OpenCC converts a few phrases to a different length: align the two strings and
        # map each changed span to the start of its source span.
        offsets = _realign(nfkc, simplified, offsets)
    # Character by character, as the offsets go; each distinct character is looked up once.
    lower = {ch: ch.lower() for ch in (distinct if simplified == text else set(simplified))}
    if all(len(low) == 1 for low in lower.values()) and _CAPITAL_SIGMA not in lower:
        # The whole string at once is the same then (only Σ lowers by its context), and far quicker.
        return simplified.lower(), offsets
    lowered = [lower[ch] for ch in simplified]
    if any(len(low) != 1 for low in lower.values()):
        offsets = [off for low, off in zip(lowered, offsets, strict=True) for _ in low]
    return "".join(lowered), offsets


def _folded(text: str, distinct: set[str]) -> tuple[str, Sequence[int]]:
    """NFKC cluster by cluster (a base character and its combining marks), so that every
    output character knows its source; text without combining marks (its `distinct`
    characters tell) goes character by character, each distinct character folded once."""
    if any(unicodedata.combining(ch) or ch in _HALFWIDTH_MARKS for ch in distinct):
        chars: list[str] = []
        offsets: list[int] = []
        for start, cluster in _clusters(text):
            folded = unicodedata.normalize("NFKC", cluster).translate(_HYPHENS)
            chars.append(folded)
            offsets += [start] * len(folded)
        return "".join(chars), offsets
    fold = {ch: piece for ch in distinct if (piece := unicodedata.normalize("NFKC", ch).translate(_HYPHENS)) != ch}
    folded = text.translate({ord(ch): piece for ch, piece in fold.items()}) if fold else text
    longer = "".join(ch for ch, piece in fold.items() if len(piece) != 1)  # … → ..., ㍿ → 株式会社
    if not longer:
        return folded, range(len(text))  # not a list: one int object per character is most of the cost
    # Each source position once per character it became: runs of the others, then each longer one.
    spread: list[int] = []
    last = 0
    for found in re.finditer(f"[{re.escape(longer)}]", text):
        spread += range(last, found.start())
        spread += [found.start()] * len(fold[found.group()])
        last = found.end()
    spread += range(last, len(text))
    return folded, spread


def _clusters(text: str) -> Iterable[tuple[int, str]]:
    start = 0
    for i in range(1, len(text) + 1):
        if i == len(text) or not (unicodedata.combining(text[i]) or text[i] in _HALFWIDTH_MARKS):
            if i > start:
                yield start, text[start:i]
            start = i


def _realign(before: str, after: str, offsets: Sequence[int]) -> list[int]:
    mapped: list[int] = []
    for op, a0, a1, b0, b1 in difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes():
        if op == "equal":
            mapped += offsets[a0:a1]
        elif b1 > b0:
            source = offsets[a0] if a0 < len(offsets) else (offsets[-1] if offsets else 0)
            mapped += [source] * (b1 - b0)
    return mapped


def as_written(original: str, normalised: str, offsets: Sequence[int], words: Iterable[str]) -> list[str]:
    """Each word of `normalised` in the form `original` writes it: its script, its case.

    `normalised` and `offsets` come from normalise_mapped(original); a word that is not
    found, or that ends inside one source character (㍿ → 株式会社), stays as given.
    """
    out = []
    for word in words:
        at = normalised.find(word)
        end = at + len(word)
        stop = offsets[end] if end < len(offsets) else len(original)
        piece = original[offsets[at] : stop].strip() if at >= 0 else ""
        out.append(piece or word)
    return out


def detect_script(text: str) -> tuple[str, str]:
    """Return (language, script): zh/Hans, zh/Hant, ja/Jpan, en/Latn or und/Zyyy."""
    sample = text[:20000]
    kana = len(_KANA.findall(sample))
    han = _HAN.findall(sample)
    if kana and kana >= 0.05 * (kana + len(han)):
        return "ja", "Jpan"
    if len(han) >= 10:
        chars = "".join(han)
        simplified = to_simplified(chars)
        traditional = sum(1 for a, b in zip(chars, simplified, strict=False) if a != b)
        # A few traditional forms survive in simplified text (quotes, names); ask for 2%.
        return ("zh", "Hant") if traditional > 0.02 * len(chars) else ("zh", "Hans")
    if len(_LATIN_WORD.findall(sample)) >= 3:
        return "en", "Latn"
    return "und", "Zyyy"


class Segmenter:
    """jieba with the watchlist's names as a user dictionary, its search for words run in C.

    The main dictionary is loaded from jieba's cache file once per process;
    the user words are added on top (a few hundred, milliseconds). jieba-fast (jieba 0.39
    with the DAG and route search in C, about half the CPU) walks the same dictionary object,
    so both give the same words (jieba-fast stops at 12 words starting at one place; jieba's
    dictionary nests 7 at most); jieba itself stays for the runs it would cut otherwise, and for posseg.
    """

    def __init__(self, user_words: Iterable[str], cache_dir: Path) -> None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        self._jieba = jieba.Tokenizer()
        self._jieba.tmp_dir = str(cache_dir)
        self._jieba.initialize()
        for word in user_words:
            if len(word) >= 2 and not word.isascii():
                self._jieba.add_word(word, freq=2_000_000)
        self._fast = jieba_fast.Tokenizer()
        # Shared, not loaded again: jieba's dictionary with the user words, and its total.
        self._fast.FREQ, self._fast.total, self._fast.initialized = self._jieba.FREQ, self._jieba.total, True

    @property
    def tokenizer(self) -> jieba.Tokenizer:
        """The jieba tokenizer with the user words (the POS tagger of `discover` wraps it)."""
        return self._jieba

    def words(self, normalised_text: str) -> list[str]:
        """Words of already-normalised text, without spaces and punctuation."""
        words: list[str] = []
        at = 0
        for run in _JIEBA_ONLY_RUN.finditer(normalised_text):
            words += _cut(self._fast, normalised_text[at : run.start()])
            words += _cut(self._jieba, run.group())
            at = run.end()
        return words + _cut(self._fast, normalised_text[at:])

    def segmented(self, text: str) -> str:
        """Normalised, segmented text joined by spaces: the `*_words` index fields."""
        return " ".join(self.words(normalise(text)))


def _cut(tokenizer: jieba.Tokenizer, text: str) -> list[str]:
    # Without the HMM pass for unknown words: ~20% faster, and documents and queries
    # are segmented alike either way.
    return [w for w in tokenizer.cut(text, HMM=False) if _WORDISH.search(w)]
