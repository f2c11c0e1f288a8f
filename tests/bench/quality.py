"""Section 1: extraction quality and CPU cost, ours beside bare trafilatura on the same pages."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import trafilatura
from trafilatura.utils import load_html

from pipeline.extract import extract, extract_body
from pipeline.models import Extraction
from tests.bench.figures import Row, Section, fmt, ratio
from tests.extraction_score import BenchPage, score


@dataclass
class Timed:
    bodies: list[str]
    cpu_seconds: float


def run_both(pages: list[BenchPage]) -> tuple[Timed, Timed, list[Extraction], list[str | None]]:
    """Extract every page both ways, page by page.

    The two calls alternate which goes first, so that cache warmth and machine noise
    fall on both alike; each call is timed with process_time (this process only).
    """
    ours, bare = Timed([], 0.0), Timed([], 0.0)
    statuses: list[Extraction] = []
    reasons: list[str | None] = []

    def run_ours(page: BenchPage) -> None:
        started = time.process_time()
        result = extract(page.html, page.url)
        ours.cpu_seconds += time.process_time() - started
        ours.bodies.append(result.body)
        statuses.append(result.status)
        reasons.append(result.reason)

    def run_bare(page: BenchPage) -> None:
        started = time.process_time()
        body = trafilatura.extract(page.html) or ""
        bare.cpu_seconds += time.process_time() - started
        bare.bodies.append(body)

    for i, page in enumerate(pages):
        first, second = (run_ours, run_bare) if i % 2 == 0 else (run_bare, run_ours)
        first(page)
        second(page)
    return ours, bare, statuses, reasons


def measure(pages: list[BenchPage]) -> Section:
    section = Section("extraction quality")
    # One page each way first: trafilatura loads lazily on first use, which no page should pay.
    extract(pages[0].html, pages[0].url)
    trafilatura.extract(pages[0].html)
    ours, bare, statuses, reasons = run_both(pages)
    truths = [p.truth for p in pages]
    our_score, bare_score = score(ours.bodies, truths), score(bare.bodies, truths)
    # Diagnosis, not a headline figure: what the score would be if the quality gate kept
    # the body it rejected (the body trafilatura found inside our own extract()).
    ungated = [
        body if status is Extraction.OK else extract_body(load_html(page.html), page.url)
        for body, status, page in zip(ours.bodies, statuses, pages, strict=True)
    ]
    ungated_score = score(ungated, truths)
    rejected = Counter(r for s, r in zip(statuses, reasons, strict=True) if s is not Extraction.OK)
    ours_rate, bare_rate = len(pages) / ours.cpu_seconds, len(pages) / bare.cpu_seconds
    section.data = {
        "extraction_pages": len(pages),
        "extraction_f1": our_score.f1,
        "extraction_precision": our_score.precision,
        "extraction_recall": our_score.recall,
        "trafilatura_f1": bare_score.f1,
        "trafilatura_precision": bare_score.precision,
        "trafilatura_recall": bare_score.recall,
        "extraction_f1_ratio": ratio(our_score.f1, bare_score.f1),
        "extraction_gate_rejections": dict(rejected),
        "extraction_f1_if_gate_kept_body": ungated_score.f1,
        "extraction_pages_per_cpu_s": ours_rate,
        "trafilatura_pages_per_cpu_s": bare_rate,
        "trafilatura_version": trafilatura.__version__,
    }
    gate = ", ".join(f"{n} {r}" for r, n in rejected.most_common()) or "none"
    section.rows = [
        Row(
            f"extraction F1 ({len(pages)} benchmark pages)",
            fmt(our_score.f1, 3),
            f"bare trafilatura {trafilatura.__version__}: {fmt(bare_score.f1, 3)} "
            f"(ratio {fmt(ratio(our_score.f1, bare_score.f1), 3)})",
            "≥ trafilatura",
            our_score.f1 >= bare_score.f1,
        ),
        Row(
            "  precision / recall",
            f"{fmt(our_score.precision, 3)} / {fmt(our_score.recall, 3)}",
            f"trafilatura: {fmt(bare_score.precision, 3)} / {fmt(bare_score.recall, 3)}",
        ),
        Row(
            "  pages the quality gate emptied",
            str(sum(rejected.values())),
            f"{gate}; F1 had it kept their body: {fmt(ungated_score.f1, 3)}",
        ),
        Row(
            "extraction pages per CPU-second",
            fmt(ours_rate, 1),
            f"bare trafilatura: {fmt(bare_rate, 1)} (ratio {fmt(ratio(ours_rate, bare_rate), 2)})",
        ),
    ]
    return section
