"""Memory with a large backlog: 400 queued pages of about 4 MB each, processed by one run.

Each page is a real article page from the extraction benchmark with a ~4 MB inline
script added, as many portals serve. The run is `process_entries` in a process of its
own (python -m tests.bench.backlog_run), so its peak RSS, summed over it and its
workers, is the pipeline's alone and not the bench's. The loopback server serves one
shared body for every URL, so the server's own memory stays small.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psutil

from pipeline.config import PROJECT_ROOT, Settings
from pipeline.entries import enqueue
from pipeline.es import Indices, connect
from pipeline.models import FeedEntry
from pipeline.setup import setup_indices
from tests.bench.figures import Row, Section, fmt
from tests.extraction_score import BenchPage
from tests.servers import FeedServer

PAGES = 400
SCRIPT_BYTES = 4_000_000
TARGET_MB = 1024.0
MB = 1024 * 1024


def heavy_page(page: BenchPage) -> bytes:
    """The real page with a large inline script in its head."""
    script = "<script>var state = " + json.dumps({"items": "x" * SCRIPT_BYTES}) + ";</script>"
    return page.html.replace("</head>", script + "</head>", 1).encode("utf-8")


def peak_tree_rss(proc: subprocess.Popen[bytes], interval: float = 0.1) -> list[float]:
    """Start sampling proc and all its descendants; the list's one item is the peak MB so far."""
    peak = [0.0]
    root = psutil.Process(proc.pid)

    def sample() -> None:
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                total = 0
                for p in tree:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        continue
                peak[0] = max(peak[0], total / MB)
            except psutil.Error:
                pass
            time.sleep(interval)

    threading.Thread(target=sample, daemon=True).start()
    return peak


def measure(es_url: str, work: Path, cache_dir: Path, pages: list[BenchPage]) -> Section:
    page = next(p for p in pages if "</head>" in p.html)
    body = heavy_page(page)
    server = FeedServer()
    server.start()
    prefix = f"backlog{uuid.uuid4().hex[:8]}"
    settings = Settings(es_url=es_url, index_prefix=prefix, var_dir=work / "backlog", cache_dir=cache_dir)
    es = connect(settings)
    setup_indices(es, settings)
    indices = Indices(prefix)
    try:
        entries = []
        for i in range(PAGES):
            link = server.add(f"/b/{i}.html", body)
            entries.append(FeedEntry("backlog", link, link, link, f"page {i}", "", None, "en", "UTC"))
        enqueue(es, indices, entries, datetime.now(UTC))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("NEWSMON_")},
            "NEWSMON_ES_URL": es_url,
            "NEWSMON_INDEX_PREFIX": prefix,
            "NEWSMON_VAR_DIR": str(settings.var_dir),
            "NEWSMON_CACHE_DIR": str(cache_dir),
            "NEWSMON_FETCH_ALLOW_PRIVATE_HOSTS": "true",
            # The run's own pool, so its workers are in the measured process tree (a warm one is not).
            "NEWSMON_POOL_KEEP_WARM_SECONDS": "0",
        }
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.backlog_run"], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE
        )
        peak = peak_tree_rss(proc)
        out, _ = proc.communicate(timeout=3600)
        seconds = time.perf_counter() - started
        if proc.returncode:
            raise RuntimeError(f"backlog run exited {proc.returncode}")
        counts = json.loads(out.decode().strip().splitlines()[-1])
    finally:
        server.stop()
        es.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)
    section = Section("backlog")
    section.data = {
        "backlog_peak_rss_mb": peak[0],
        "backlog_pages": PAGES,
        "backlog_page_bytes": len(body),
        "backlog_seconds": seconds,
        "backlog_indexed": counts["indexed"],
    }
    section.rows = [
        Row(
            f"backlog of {PAGES} × {len(body) / 1e6:.1f} MB pages: peak RSS, run + workers (MB)",
            fmt(peak[0], 0),
            f"{counts['indexed']} indexed in {seconds:.0f} s; before chunking: 4.7 GB",
            f"≤ {TARGET_MB:,.0f} MB",
            peak[0] <= TARGET_MB and counts["indexed"] == PAGES,
        )
    ]
    return section
