"""What the warm worker pool costs beside building in the calling process (no deadline there).

Extraction runs in worker processes so that a deadline can kill it (pipeline/process.py).
This measures the price: the pool's start-up (forkserver, workers, each loading the
tagger), paid once per run today, and the per-page overhead of shipping a page to a
worker and its document back, with one worker against the same pages built in-process.
Also the time from a fresh pool's start to its first article, for a real irrelevant and a
real relevant corpus article: only a relevant one needs jieba's POS model (discovery).
"""

from __future__ import annotations

import time

from pipeline.config import Settings
from pipeline.process import ArticleBuilder, Job, build_article
from pipeline.tag import get_tagger
from tests.bench import corpus
from tests.bench.figures import Row, Section, fmt
from tests.corpus import Kind, load_articles
from tests.pages import article_html

PAGES = 40  # benchmark pages built each way: enough for a per-page figure, short enough for `make bench`


def pool_seconds(settings: Settings, jobs: list[Job]) -> tuple[float, float]:
    """(start-up until every worker is warm, building `jobs` on the warm pool), wall seconds."""
    with ArticleBuilder(settings) as builder:
        began = time.perf_counter()
        builder.start()
        list(builder.build([]))  # waits for the warm-up to finish
        startup = time.perf_counter() - began
        began = time.perf_counter()
        built = list(builder.build(jobs))
        build = time.perf_counter() - began
    assert len(built) == len(jobs), "the pool gave a document per page"
    return startup, build


def first_article_seconds(settings: Settings, job: Job) -> float:
    """From a fresh pool's start to its first built article, as a run with one new entry waits."""
    with ArticleBuilder(settings) as builder:
        began = time.perf_counter()
        builder.start()
        (built,) = builder.build([job])
        assert built.failure is None, f"{job.entry.url}: {built.detail}"
        return time.perf_counter() - began


def corpus_job(kind: Kind) -> Job:
    """The first real zh-Hans corpus article of this kind, as a fetched page."""
    found = next(a for a in load_articles() if a.kind is kind and a.language == "zh-Hans")
    page = article_html(found.title, found.body.split("\n\n"))
    (job,) = corpus.jobs([corpus.Article(url=found.url, title=found.title, html=page, language=found.language)])
    return job


def measure(settings: Settings, jobs: list[Job]) -> Section:
    jobs = jobs[:PAGES]
    one = settings.model_copy(update={"workers": 1})
    get_tagger(one)  # in-process: loaded before timing, as the warm workers have it
    began = time.perf_counter()
    for job in jobs:
        build_article(job, one)
    in_process = time.perf_counter() - began
    startup_one, pool_one = pool_seconds(one, jobs)
    every = settings.model_copy(update={"workers": 0})  # one per CPU, as runs use by default
    workers = ArticleBuilder(every).workers
    startup_all, pool_all = pool_seconds(every, jobs)
    # After the pools above: the process's forkserver is running, so neither pays its start.
    first_unrelated = first_article_seconds(every, corpus_job(Kind.UNRELATED))
    first_relevant = first_article_seconds(every, corpus_job(Kind.POSITIVE))
    overhead_ms = (pool_one - in_process) / len(jobs) * 1000
    section = Section("pool overhead")
    section.data = {
        "pool_startup_seconds": startup_all,
        "pool_startup_seconds_one_worker": startup_one,
        "pool_workers": workers,
        "pool_pages": len(jobs),
        "in_process_ms_per_page": in_process / len(jobs) * 1000,
        "pool_one_worker_ms_per_page": pool_one / len(jobs) * 1000,
        "pool_all_workers_ms_per_page": pool_all / len(jobs) * 1000,
        "pool_overhead_ms_per_page": overhead_ms,
        "pool_first_unrelated_article_seconds": first_unrelated,
        "pool_first_relevant_article_seconds": first_relevant,
    }
    section.rows = [
        Row(
            f"pool start-up, {workers} workers warm (s)",
            fmt(startup_all, 2),
            f"one worker: {fmt(startup_one, 2)} s; paid once per run",
        ),
        Row(
            "pool overhead per page, one worker vs in-process (ms)",
            fmt(overhead_ms, 1),
            f"in-process {fmt(in_process / len(jobs) * 1000, 1)} ms/page, one worker "
            f"{fmt(pool_one / len(jobs) * 1000, 1)}, {workers} workers {fmt(pool_all / len(jobs) * 1000, 1)} "
            f"({len(jobs)} benchmark pages)",
        ),
        Row(
            "fresh pool's start → its first article built, one real zh-Hans page (s)",
            f"unrelated {fmt(first_unrelated, 2)}",
            f"relevant (loads jieba's POS model for discovery): {fmt(first_relevant, 2)}",
        ),
    ]
    return section
