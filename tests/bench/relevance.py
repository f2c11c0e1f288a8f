"""Section: the shipped topic rule against the naive one on the labelled real corpus.

The naive rule is what a user would type into a news alert: an export-control or material
term AND Japan AND China, anywhere in the text. Held-out stories (a quarter, by hash) were
never looked at while tuning the rule; their figures are reported apart.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import PROJECT_ROOT
from pipeline.tag import Tagger
from pipeline.watchlist import load_watchlist
from tests.bench.figures import Row, Section, fmt
from tests.corpus import CorpusArticle, Kind, load_articles

CONFIG_DIR = PROJECT_ROOT / "config"
NAIVE_GROUPS = ({"export_control", "material"}, {"japan"}, {"china"})


def measure(cache_dir: Path) -> Section:
    section = Section("relevance")
    tagger = Tagger(load_watchlist(CONFIG_DIR / "watchlist.yaml"), CONFIG_DIR, cache_dir)
    entries = tagger.watchlist.by_id()
    verdicts: list[tuple[CorpusArticle, bool, bool]] = []
    for article in load_articles():
        tags = tagger.tag(article.title, article.body)
        groups = {g for i in tags.mentions for g in entries[i].groups} | set(tags.mentions)
        naive = all(groups & need for need in NAIVE_GROUPS)
        verdicts.append((article, tags.relevance.relevant, naive))
    for split, keep in (("all", lambda a: True), ("held_out", lambda a: a.held_out)):
        chosen = [(a, s, n) for a, s, n in verdicts if keep(a)]
        for rule, pick in (("shipped", 1), ("naive", 2)):
            pos = [v for v in chosen if v[0].kind is Kind.POSITIVE]
            hard = [v for v in chosen if v[0].kind is Kind.HARD_NEGATIVE]
            unrelated = [v for v in chosen if v[0].kind is Kind.UNRELATED]
            tp = sum(1 for v in pos if v[pick])
            flagged = sum(1 for v in chosen if v[pick])
            hard_fp = sum(1 for v in hard if v[pick])
            recall = tp / len(pos) if pos else None
            precision = tp / flagged if flagged else None
            key = f"relevance_{rule}_{split}"
            section.data |= {
                f"{key}_recall": recall,
                f"{key}_precision": precision,
                f"{key}_hard_negative_fp": hard_fp,
                f"{key}_hard_negatives": len(hard),
                f"{key}_unrelated_fp": sum(1 for v in unrelated if v[pick]),
            }
            shipped = rule == "shipped"
            section.rows += [
                Row(
                    f"{rule} rule recall ({split}, {len(pos)} positives)",
                    fmt(recall, 3),
                    "",
                    "≥ 0.975" if shipped else "",
                    (recall or 0) >= 0.975 if shipped else None,
                ),
                Row(f"{rule} rule precision ({split})", fmt(precision, 3)),
                Row(
                    f"{rule} rule hard-negative false positives ({split})",
                    f"{hard_fp}/{len(hard)}",
                    "",
                    "0" if shipped else "",
                    hard_fp == 0 if shipped else None,
                ),
            ]
    return section
