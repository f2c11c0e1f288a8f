"""Our extraction scores at least as well as the trafilatura it wraps, on the shared benchmark."""

from __future__ import annotations

import json

import pytest
import trafilatura

from pipeline.extract import extract
from tests.extraction_score import benchmark_dir, load_pages, page_pr, score

SAMPLE = 40

BENCHMARK = benchmark_dir()
MISSING = "shared/benchmarks/article-extraction is missing: CI and developers have it beside the checkout"


def sample_ids() -> list[str]:
    """A fixed sample, spread evenly over the ids in sorted order (the same 40 on every run)."""
    assert BENCHMARK is not None, MISSING
    ids = sorted(json.loads((BENCHMARK / "ground-truth.json").read_text(encoding="utf-8")))
    return [ids[i * len(ids) // SAMPLE] for i in range(SAMPLE)]


def test_score_follows_the_benchmark_definition() -> None:
    assert page_pr("", "") == (1.0, 1.0)
    assert page_pr("one two three four", "one two three four") == (1.0, 1.0)
    assert page_pr("", "one two three four") == (0.0, 0.0)
    # 2 shared shingles of 3 predicted and 2 true: precision 2/3, recall 1.
    assert page_pr("a b c d e f", "a b c d e") == pytest.approx((2 / 3, 1.0))
    assert score(["a b c d", ""], ["a b c d", "w x y z"]).f1 == pytest.approx(2 * 0.5 * 0.5 / (0.5 + 0.5))


def test_our_extraction_is_at_least_as_good_as_bare_trafilatura() -> None:
    assert BENCHMARK is not None, MISSING
    pages = load_pages(BENCHMARK, sample_ids())
    truths = [p.truth for p in pages]
    ours = [extract(p.html, p.url).body for p in pages]
    bare = [trafilatura.extract(p.html) or "" for p in pages]
    ours_f1, bare_f1 = score(ours, truths).f1, score(bare, truths).f1
    # The pages we lose most on, to start the diagnosis from the failure message.
    losses = sorted(
        (round(sum(page_pr(o, t)) - sum(page_pr(b, t)), 3), p.id[:12])
        for o, b, t, p in zip(ours, bare, truths, pages, strict=True)
    )[:3]
    assert ours_f1 >= bare_f1, (
        f"our F1 {ours_f1:.3f} < trafilatura {trafilatura.__version__} F1 {bare_f1:.3f} on {SAMPLE} pages; "
        f"largest losses in P+R (delta, page id): {losses}"
    )
