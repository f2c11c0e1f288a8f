"""Section: end to end against the simplest script (issue 18's yardstick).

The same real pages (the shared extraction benchmark) are served from 10 loopback feeds.
`tests.bench.naive_script` (feedparser → httpx → trafilatura → jieba → one bulk call, in
sequence) and `newsmon run --once` each run as a fresh process into a fresh index; the
figure is the ratio of their wall times, the better of two rounds each, in one bench run.
The pipeline runs twice over: each starting its own pool, and on the warm pool (pipeline.warmpool)
an earlier run left, as scheduled runs do; the first warm run, which starts it, is not counted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from elasticsearch import Elasticsearch

from pipeline.config import PROJECT_ROOT
from tests.bench.alerting import newsmon_command
from tests.bench.feedhost import FeedHost
from tests.bench.figures import Row, Section, fmt
from tests.extraction_score import BenchPage
from tests.pages import rss, write_feeds

FEEDS = 10
ROUNDS = 2
TARGET_RATIO = 1.8
TIMEOUT_S = 600
KEEP_WARM_S = 120  # the warm rounds' pool; `pool stop` ends it after the last
# Every page sits on one loopback host; real pages come from many, so the pipeline's
# per-host politeness limit is raised to what ten distinct hosts would allow.
PER_HOST = "8"


def _serve(host: FeedHost, pages: list[BenchPage]) -> list[str]:
    feeds: list[list[dict[str, str]]] = [[] for _ in range(FEEDS)]
    for i, page in enumerate(pages):
        link = host.add(f"/pages/{page.id}.html", page.html)
        feeds[i % FEEDS].append({"title": f"page {page.id[:12]}", "link": link})
    return [
        host.add(f"/feeds/{n}.xml", rss(f"feed {n}", items), "application/rss+xml") for n, items in enumerate(feeds)
    ]


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(
        command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    return time.perf_counter() - started, done


def _count(es: Elasticsearch, index: str) -> int:
    es.indices.refresh(index=index)
    return int(es.count(index=index)["count"])


def measure(es_url: str, work_dir: Path, cache_dir: Path, pages: list[BenchPage]) -> Section:
    section = Section("end to end vs naive script")
    es = Elasticsearch(es_url)
    config_dir = work_dir / "naive-config"
    shutil.copytree(PROJECT_ROOT / "config", config_dir, dirs_exist_ok=True)
    (config_dir / "alerts.yaml").write_text("rules: []\n", encoding="utf-8")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSMON_")}
    pool_env = {
        "NEWSMON_CONFIG_DIR": str(config_dir),
        "NEWSMON_CACHE_DIR": str(cache_dir),
        "NEWSMON_POOL_KEEP_WARM_SECONDS": str(KEEP_WARM_S),
    }
    naive_walls: list[float] = []
    walls: dict[str, list[float]] = {"cold": [], "warm": []}
    naive_docs = pipeline_docs = 0
    try:
        with FeedHost() as host:
            feed_urls = _serve(host, pages)
            write_feeds(config_dir, [(f"bench-{n}", url, "en") for n, url in enumerate(feed_urls)])
            for _ in range(ROUNDS):
                index = f"naive-{uuid.uuid4().hex[:8]}"
                command = [sys.executable, "-m", "tests.bench.naive_script", es_url, index, *feed_urls]
                wall, done = _timed(command, base_env)
                if done.returncode != 0:
                    section.error = f"naive script exited {done.returncode}: {done.stderr[-400:]}"
                    return section
                naive_walls.append(wall)
                naive_docs = _count(es, index)
                es.indices.delete(index=index)
                # A pool of the run's own (NEWSMON_POOL_KEEP_WARM_SECONDS=0), as every run had before.
                wall, pipeline_docs = _pipeline_run(
                    es, es_url, work_dir, base_env | pool_env | {"NEWSMON_POOL_KEEP_WARM_SECONDS": "0"}
                )
                walls["cold"].append(wall)
            # The first run starts the warm pool (not counted: it pays the start-up, as a cold run does);
            # each run after it is a scheduled run's usual case.
            for counted in (False, *[True] * ROUNDS):
                wall, pipeline_docs = _pipeline_run(es, es_url, work_dir, base_env | pool_env)
                if counted:
                    walls["warm"].append(wall)
    except RuntimeError as exc:
        section.error = str(exc)
        return section
    finally:
        subprocess.run([*newsmon_command(), "pool", "stop"], env=base_env | pool_env, capture_output=True, check=False)
    naive, cold, warm = min(naive_walls), min(walls["cold"]), min(walls["warm"])
    section.data = {
        "e2e_vs_naive_ratio": naive / warm,
        "e2e_vs_naive_ratio_cold": naive / cold,
        "e2e_naive_seconds": naive_walls,
        "e2e_pipeline_seconds": walls["warm"],
        "e2e_pipeline_cold_seconds": walls["cold"],
        "e2e_pages": len(pages),
        "e2e_naive_documents": naive_docs,
        "e2e_pipeline_documents": pipeline_docs,
    }
    what = f"end to end, {len(pages)} real pages from {FEEDS} feeds: naive script wall ÷ `newsmon run --once` wall"
    section.rows = [
        Row(
            f"{what}, on the warm pool a run before left",
            fmt(naive / warm, 2),
            f"naive {fmt(naive, 1)} s ({naive_docs} docs), newsmon {fmt(warm, 1)} s ({pipeline_docs} articles); "
            f"better of {ROUNDS} rounds each",
            f"≥ {TARGET_RATIO}",
            naive / warm >= TARGET_RATIO,
        ),
        Row(
            f"{what}, each run starting its own pool (NEWSMON_POOL_KEEP_WARM_SECONDS=0)",
            fmt(naive / cold, 2),
            f"newsmon {fmt(cold, 1)} s; the first run of a day, or a run told the warm pool is busy",
            "",
            None,
        ),
    ]
    return section


def _pipeline_run(es: Elasticsearch, es_url: str, work_dir: Path, base_env: dict[str, str]) -> tuple[float, int]:
    """`newsmon run --once` into a fresh index: its wall time and the articles it indexed."""
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    env = base_env | {
        "NEWSMON_ES_URL": es_url,
        "NEWSMON_INDEX_PREFIX": prefix,
        "NEWSMON_VAR_DIR": str(work_dir / f"naive-var-{prefix}"),
        "NEWSMON_FETCH_ALLOW_PRIVATE_HOSTS": "true",
        "NEWSMON_FETCH_PER_HOST_CONCURRENCY": PER_HOST,
    }
    setup = subprocess.run([*newsmon_command(), "setup", "--no-seeds"], env=env, capture_output=True, check=False)
    if setup.returncode != 0:
        raise RuntimeError(f"newsmon setup exited {setup.returncode}: {setup.stderr[-400:]!r}")
    wall, done = _timed([*newsmon_command(), "run", "--once"], env)
    if done.returncode != 0:
        raise RuntimeError(f"newsmon run --once exited {done.returncode}: {(done.stdout + done.stderr)[-400:]}")
    docs = _count(es, f"{prefix}-articles")
    es.indices.delete(index=f"{prefix}-*", expand_wildcards="all")
    return wall, docs
