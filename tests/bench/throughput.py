"""Section 2: articles per wall-second through extract → tag → index on the real pool
and the real node, beside single-process bare trafilatura over the same pages; and
where the time goes (a single-process pass that times each stage separately)."""

from __future__ import annotations

import cProfile
import os
import pickle
import pstats
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import trafilatura
from elasticsearch import Elasticsearch

from pipeline import process
from pipeline.config import Settings
from pipeline.es import Indices
from pipeline.index import bulk_index
from pipeline.process import ArticleBuilder, Job, build_article
from pipeline.setup import setup_indices
from tests.bench.figures import Row, Section, fmt
from tests.bench.procwatch import ProcessWatch

TARGET_SPEEDUP = 1.5
WARM_DOCS = 300
POOL_RUN = "pipeline pool run"  # the ProcessWatch section whose peak RSS is the headline


@dataclass
class PoolRun:
    articles: int
    indexed: int
    wall: float
    first_result: float  # pool start-up: worker processes, imports, tagger load
    index_wall: float  # bulk requests from the main process; the pool sits idle meanwhile
    not_ok: dict[str, int]


def ready_indices(es: Elasticsearch, settings: Settings) -> Indices:
    setup_indices(es, settings)
    return Indices(settings.index_prefix)


def warm_node(es: Elasticsearch, settings: Settings, jobs: list[Job]) -> None:
    """Index raw pages into a throwaway index first: a node started a minute ago is still
    compiling its indexing code (JIT), which a long-running production node is not."""
    indices = ready_indices(es, replace_prefix(settings))
    docs = [(f"warm-{i}", {"title": j.entry.title, "body": j.page.html if j.page else ""}) for i, j in enumerate(jobs)]
    bulk_index(es, indices, docs, settings.bulk_size)


def bare_trafilatura(jobs: list[Job]) -> float:
    """Wall seconds for one process running trafilatura.extract over every page."""
    started = time.perf_counter()
    for job in jobs:
        assert job.page is not None
        trafilatura.extract(job.page.html)
    return time.perf_counter() - started


def pipeline_run(settings: Settings, es: Elasticsearch, indices: Indices, jobs: list[Job]) -> PoolRun:
    """The process stage's own loop (pipeline.lifecycle.process_entries) without the entry queue:
    ArticleBuilder's pool builds documents, the main process bulk-indexes them."""
    indexed, index_wall, first = 0, 0.0, 0.0
    not_ok: dict[str, int] = {}
    batch: list[tuple[str, dict[str, Any]]] = []

    def flush() -> None:
        nonlocal indexed, index_wall
        if batch:
            began = time.perf_counter()
            indexed += bulk_index(es, indices, batch, settings.bulk_size).indexed
            index_wall += time.perf_counter() - began
            batch.clear()

    started = time.perf_counter()
    with ArticleBuilder(settings) as builder:
        for done, built in enumerate(builder.build(jobs), start=1):
            if done == 1:
                first = time.perf_counter() - started
            if built.document is None:  # as process_entries: counted, nothing to index
                continue
            doc_id, doc = built.document
            if doc["extraction"] != "ok":
                key = f"{doc['extraction']}:{doc.get('extraction_reason')}"
                not_ok[key] = not_ok.get(key, 0) + 1
            batch.append((doc_id, doc))
            if len(batch) >= settings.bulk_size:
                flush()
        flush()
        es.indices.refresh(index=indices.articles)  # once per stage, as process_entries does
    wall = time.perf_counter() - started
    return PoolRun(len(jobs), indexed, wall, first, index_wall, not_ok)


@contextmanager
def timed_stages(totals: dict[str, float]) -> Iterator[None]:
    """Wrap the extract and tag calls that build_article makes, adding up their wall time.

    Only for the single-process pass: the wrappers call the real functions unchanged.
    """
    real_extract, real_get_tagger = process.extract, process.get_tagger

    def timed(key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[key] = totals.get(key, 0.0) + time.perf_counter() - began

        return call

    class TimedTagger:
        def __init__(self, tagger: Any) -> None:
            self.tag = timed("tag", tagger.tag)

    process.extract = timed("extract", real_extract)  # type: ignore[assignment]
    process.get_tagger = lambda settings: TimedTagger(real_get_tagger(settings))  # type: ignore[assignment,return-value]
    try:
        yield
    finally:
        process.extract, process.get_tagger = real_extract, real_get_tagger  # type: ignore[assignment]


def stage_split(settings: Settings, es: Elasticsearch, indices: Indices, jobs: list[Job]) -> dict[str, float]:
    """Seconds per stage for `jobs` in this process: extract, tag, the rest of building the
    document, the pickling a pool pays per job, and the bulk request (with its refresh)."""
    process.get_tagger(settings)  # loaded before the clock starts, as in a warmed worker
    totals: dict[str, float] = {}
    docs = []
    with timed_stages(totals):
        began = time.perf_counter()
        for job in jobs:
            docs.append(build_article(job, settings))
        built = time.perf_counter() - began
    began = time.perf_counter()
    for job, doc in zip(jobs, docs, strict=True):
        pickle.loads(pickle.dumps(job))  # what ProcessPoolExecutor sends to a worker...
        pickle.loads(pickle.dumps(doc))  # ...and what comes back
    pickled = time.perf_counter() - began
    began = time.perf_counter()
    bulk_index(es, indices, docs, settings.bulk_size)
    indexed = time.perf_counter() - began
    return {
        "extract": totals.get("extract", 0.0),
        "tag": totals.get("tag", 0.0),
        "document": built - totals.get("extract", 0.0) - totals.get("tag", 0.0),
        "pickle": pickled,
        "index": indexed,
    }


def profile_by_package(settings: Settings, jobs: list[Job]) -> dict[str, float]:
    """Share of own (tottime) CPU per top-level package for build_article over `jobs`.

    cProfile inflates pure-Python code (jieba) more than C (lxml), so read it as a rough
    guide beside the stage split, not as exact shares.
    """
    process.get_tagger(settings)
    profiler = cProfile.Profile()
    profiler.enable()
    for job in jobs:
        build_article(job, settings)
    profiler.disable()
    shares: dict[str, float] = {}
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    for (filename, _, _), (_, _, tottime, _, _) in stats.items():
        shares[_package(filename)] = shares.get(_package(filename), 0.0) + tottime
    total = sum(shares.values()) or 1.0
    return {k: round(v / total, 3) for k, v in sorted(shares.items(), key=lambda kv: -kv[1]) if v / total >= 0.01}


def _package(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/pipeline/" in filename:
        return "pipeline"
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins (C calls)"
    return "stdlib"


def measure(
    settings: Settings,
    es: Elasticsearch,
    watch: ProcessWatch,
    bench_jobs: list[Job],
    generated_jobs: list[Job],
    sample: int,
) -> Section:
    section = Section("pipeline throughput")
    jobs = bench_jobs + generated_jobs
    settings = replace_prefix(settings)
    indices = ready_indices(es, settings)
    trafilatura.extract(jobs[0].page.html if jobs[0].page else "")  # lazy imports, paid by neither side
    bare_wall = bare_trafilatura(jobs)
    warm_node(es, settings, jobs[-WARM_DOCS:])
    cpu_before = watch.cpu_seconds()
    with watch.section(POOL_RUN):
        run = pipeline_run(settings, es, indices, jobs)
    cpu = {k: v - cpu_before[k] for k, v in watch.cpu_seconds().items()}
    es.indices.refresh(index=indices.articles)
    counted = int(es.count(index=indices.articles)["count"])

    subset = bench_jobs[:sample] + generated_jobs[:sample]
    split_settings = replace_prefix(settings)
    split = stage_split(split_settings, es, ready_indices(es, split_settings), subset)
    split_bare = bare_trafilatura(subset)
    profile = profile_by_package(
        settings,
        bench_jobs[sample : sample + sample // 2] + generated_jobs[sample : sample + sample // 2],
    )

    ours_rate, bare_rate = run.articles / run.wall, len(jobs) / bare_wall
    steady_rate = (run.articles - 1) / (run.wall - run.first_result - run.index_wall)
    speedup = ours_rate / bare_rate
    per_article = {k: v / len(subset) * 1000 for k, v in split.items()}
    bare_ms = split_bare / len(subset) * 1000
    section.data = {
        "pipeline_articles": run.articles,
        "pipeline_indexed": counted,
        "pipeline_workers": settings.workers or "one per CPU",
        "pipeline_articles_per_s": ours_rate,
        "trafilatura_articles_per_s": bare_rate,
        "pipeline_speedup": speedup,
        "pipeline_wall_seconds": run.wall,
        "pipeline_pool_startup_seconds": run.first_result,
        "pipeline_index_wall_seconds": run.index_wall,
        "pipeline_articles_per_s_after_startup_without_index": steady_rate,
        "pipeline_cpu_seconds": cpu,
        "pipeline_not_ok": run.not_ok,
        "stage_split": split,
        "stage_split_articles": len(subset),
        "stage_split_ms_per_article": per_article,
        "stage_split_trafilatura_ms_per_article": bare_ms,
        "profile_share_by_package": profile,
    }
    split_text = ", ".join(f"{k} {fmt(v, 1)}" for k, v in per_article.items())
    top = ", ".join(f"{k} {v:.0%}" for k, v in list(profile.items())[:4])
    section.rows = [
        Row(
            f"pipeline articles/s ({len(bench_jobs)} benchmark + {len(generated_jobs)} Chinese pages)",
            fmt(ours_rate, 1),
            f"bare trafilatura, 1 process: {fmt(bare_rate, 1)}/s; speedup {fmt(speedup, 2)}×",
            f"≥ {TARGET_SPEEDUP}×",
            speedup >= TARGET_SPEEDUP,
        ),
        Row(
            "  pipeline wall (s)",
            fmt(run.wall, 1),
            f"pool start-up {fmt(run.first_result, 1)} s + bulk_index {fmt(run.index_wall, 1)} s (pool idle) "
            f"+ the rest at {fmt(steady_rate, 1)} articles/s; {counted} indexed",
        ),
        Row(
            "  CPU-s used during it",
            fmt(sum(cpu.values()), 1),
            f"of {fmt(_cores() * run.wall, 1)} available: workers {fmt(cpu['children'], 1)}, "
            f"Elasticsearch {fmt(cpu['elasticsearch'], 1)}, main {fmt(cpu['bench'], 1)}",
        ),
        Row(
            f"  stage split, ms/article (1 process, {len(subset)} pages)",
            split_text,
            f"bare trafilatura: {fmt(bare_ms, 1)} ms; cProfile: {top}",
        ),
    ]
    if counted != run.articles:
        section.error = f"{run.articles} articles built but {counted} in the index"
    return section


def _cores() -> int:
    return os.cpu_count() or 1


def replace_prefix(settings: Settings) -> Settings:
    """The same settings on a fresh set of indices."""
    return settings.model_copy(update={"index_prefix": f"bench-{uuid.uuid4().hex[:8]}"})
