"""The article-extraction benchmark: its pages, its ground truth and its score.

The score follows the benchmark's README exactly: ``\\w+`` tokens, a multiset of
4-token shingles, TP/FP/FN normalised to sum 1 per page (so long pages weigh no
more than short ones), precision and recall averaged over pages, F1 of the averages.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import PROJECT_ROOT

SHINGLE = 4
_TOKEN = re.compile(r"\w+")
# The repo's sibling `shared/` folder first (a checkout next to it), then the machine-wide copy.
_CANDIDATES = (
    PROJECT_ROOT.parent / "shared" / "benchmarks" / "article-extraction",
    Path("/work/shared/benchmarks/article-extraction"),
)


@dataclass(frozen=True)
class BenchPage:
    id: str
    url: str
    html: str
    truth: str


@dataclass(frozen=True)
class Score:
    precision: float
    recall: float
    f1: float
    pages: int


def benchmark_dir() -> Path | None:
    """The benchmark folder, or None when this machine has no copy."""
    return next((d for d in _CANDIDATES if (d / "ground-truth.json").is_file()), None)


def load_pages(directory: Path, ids: Iterable[str] | None = None) -> list[BenchPage]:
    """Benchmark pages (all, or the given ids) in id order, HTML decoded as the pages declare."""
    truth = json.loads((directory / "ground-truth.json").read_text(encoding="utf-8"))
    wanted = sorted(truth) if ids is None else list(ids)
    pages = []
    for page_id in wanted:
        raw = gzip.decompress((directory / "html" / f"{page_id}.html.gz").read_bytes())
        # The benchmark's pages are UTF-8; a stray invalid byte must not drop the page.
        html = raw.decode("utf-8", "replace")
        pages.append(BenchPage(page_id, truth[page_id].get("url") or "", html, truth[page_id]["articleBody"]))
    return pages


def shingles(text: str) -> Counter[tuple[str, ...]]:
    tokens = _TOKEN.findall(text or "")
    return Counter(tuple(tokens[i : i + SHINGLE]) for i in range(len(tokens) - SHINGLE + 1))


def page_pr(predicted: str, truth: str) -> tuple[float, float]:
    """(precision, recall) of one page."""
    pred, true = shingles(predicted), shingles(truth)
    tp = sum((pred & true).values())
    fp = sum(pred.values()) - tp
    fn = sum(true.values()) - tp
    if fp == 0 and fn == 0:
        return 1.0, 1.0  # a perfect page, including two empty texts
    if tp == 0:
        return 0.0, 0.0  # nothing to match
    total = tp + fp + fn  # normalised to sum 1, as the README defines it
    tp_n, fp_n, fn_n = tp / total, fp / total, fn / total
    return tp_n / (tp_n + fp_n), tp_n / (tp_n + fn_n)


def score(predictions: Iterable[str], truths: Iterable[str]) -> Score:
    """Benchmark score of predicted bodies against true bodies, page by page."""
    pairs = [page_pr(p, t) for p, t in zip(predictions, truths, strict=True)]
    if not pairs:
        return Score(0.0, 0.0, 0.0, 0)
    precision = sum(p for p, _ in pairs) / len(pairs)
    recall = sum(r for _, r in pairs) / len(pairs)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Score(precision, recall, f1, len(pairs))
