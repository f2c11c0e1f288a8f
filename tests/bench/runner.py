"""Runs every section, prints one table, writes var/bench/latest.json."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from pipeline.config import PROJECT_ROOT, Settings
from pipeline.es import connect
from tests.bench import (
    alerting,
    analysis,
    backlog,
    corpus,
    dates,
    discovery,
    naive,
    polling,
    pool,
    quality,
    relevance,
    scale,
    stories,
    streaming,
    tagging,
    throughput,
)
from tests.bench.figures import Row, Section, fmt, table, write_json
from tests.bench.node import embedded_node
from tests.bench.procwatch import ProcessWatch

OUTPUT = PROJECT_ROOT / "var" / "bench" / "latest.json"
RSS_TARGET_MB = 1.5 * 1024
RUNTIME_TARGET_S = 600.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--feeds", type=int, default=1000, help="feeds to poll (default 1000)")
    parser.add_argument("--generated", type=int, default=500, help="generated Chinese pages (default 500)")
    parser.add_argument("--sample", type=int, default=40, help="pages of each kind in the stage split (default 40)")
    parser.add_argument(
        "--poll-budget",
        type=float,
        default=120.0,
        help="seconds a real first poll_stage may be projected to take before its enqueue share is projected instead",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SECTION",
        help="run only sections whose name contains this (repeatable), e.g. --only polling",
    )
    parser.add_argument(
        "--scale-docs",
        type=int,
        action="append",
        default=[],
        metavar="N",
        help="articles in the index of the scale section, repeatable (default 10000 and 300000, as issue 18 asks)",
    )
    parser.add_argument(
        "--run-timeout",
        type=float,
        default=alerting.RUN_TIMEOUT_S,
        metavar="S",
        help="seconds after which the scale section stops a `newsmon run --once` and reports it timed out "
        f"(default {alerting.RUN_TIMEOUT_S})",
    )
    parser.add_argument(
        "--stream-items",
        type=int,
        default=None,
        help="items the streaming section publishes (default: one per labelled event but the warm-up's)",
    )
    parser.add_argument("--output", type=Path, default=OUTPUT)
    return parser.parse_args(argv)


def run_section(
    console: Console, watch: ProcessWatch, name: str, work: Callable[[], Section], only: list[str]
) -> list[Section]:
    """One section (none when `--only` leaves it out); a failure becomes an error row, never a silent gap."""
    if only and not any(part in name for part in only):
        return []
    console.log(f"[bold]{name}[/bold] …")
    began = time.perf_counter()
    try:
        with watch.section(name):
            section = work()
    except Exception as exc:
        traceback.print_exc()
        section = Section(name, error=f"{type(exc).__name__}: {exc}"[:300])
    console.log(f"{name} done in {time.perf_counter() - began:.1f} s")
    section.data[f"section_seconds_{name.replace(' ', '_')}"] = time.perf_counter() - began
    return [section]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    # Piped output (make, CI logs) has no terminal width; 80 columns would fold every row.
    out = Console(width=None if sys.stdout.isatty() else 170)
    started, load_before = time.perf_counter(), os.getloadavg()
    inherited = sorted(k for k in os.environ if k.startswith("NEWSMON_"))
    if inherited:
        console.log(f"[yellow]NEWSMON_ settings from the environment apply:[/yellow] {', '.join(inherited)}")
    watch = ProcessWatch()
    watch.start()
    sections: list[Section] = []
    node_seconds = None
    with tempfile.TemporaryDirectory(prefix="newsmon-bench-") as tmp:
        work = Path(tmp)
        settings = Settings(cache_dir=work / "cache", var_dir=work / "var", config_dir=PROJECT_ROOT / "config")
        pages = corpus.benchmark_pages()
        # No server runs yet: the CPU-timed sections go first, on a quiet machine.
        sections += run_section(console, watch, "extraction quality", lambda: quality.measure(pages), args.only)
        sections += run_section(console, watch, "dates", dates.measure, args.only)
        sections += run_section(console, watch, "tagging", lambda: tagging.measure(settings.cache_dir), args.only)
        sections += run_section(console, watch, "relevance", lambda: relevance.measure(settings.cache_dir), args.only)
        sections += run_section(console, watch, "discovery", lambda: discovery.measure(settings.cache_dir), args.only)
        sections += run_section(
            console,
            watch,
            "pool overhead",
            lambda: pool.measure(settings, corpus.jobs(corpus.benchmark_articles(pages))),
            args.only,
        )
        console.log("starting the embedded Elasticsearch node …")
        with embedded_node(work / "var") as node:
            node_seconds = node.start_seconds
            watch.server_root = node.pid
            es_settings = settings.model_copy(update={"es_url": node.url})
            es = connect(es_settings)
            sections += run_section(console, watch, "analysis", lambda: analysis.measure(node.url, node.pid), args.only)
            sections += run_section(
                console, watch, "stories", lambda: stories.measure(node.url, node.pid, settings.cache_dir), args.only
            )
            sections += run_section(
                console,
                watch,
                "pipeline throughput",
                lambda: throughput.measure(
                    es_settings,
                    es,
                    watch,
                    corpus.jobs(corpus.benchmark_articles(pages)),
                    corpus.jobs(corpus.generated_articles(args.generated)),
                    args.sample,
                ),
                args.only,
            )
            sections += run_section(
                console,
                watch,
                "polling",
                lambda: polling.measure(node.url, work, args.feeds, args.poll_budget),
                args.only,
            )
            sections += run_section(
                console, watch, "alert latency", lambda: alerting.measure(node.url, work, settings.cache_dir), args.only
            )
            sections += run_section(
                console, watch, "backlog", lambda: backlog.measure(node.url, work, settings.cache_dir, pages), args.only
            )
            sections += run_section(
                console,
                watch,
                "scale",
                lambda: scale.measure(es_settings, es, work, pages, args.scale_docs or scale.SIZES, args.run_timeout),
                args.only,
            )
            sections += run_section(
                console,
                watch,
                "end to end vs naive script",
                lambda: naive.measure(node.url, work, settings.cache_dir, pages),
                args.only,
            )
            sections += run_section(
                console,
                watch,
                "streaming",
                lambda: streaming.measure(node.url, work, settings.cache_dir, args.stream_items),
                args.only,
            )
    watch.stop()
    total = time.perf_counter() - started
    sections.append(overall(watch, total, load_before))
    extra = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "total_seconds": total,
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "python": platform.python_version(),
        "es_node_start_seconds": node_seconds,
        "inherited_settings": inherited,
    }
    # A run of some sections (`--only`, `make bench-airflow`) keeps the other sections' figures.
    write_json(args.output, sections, extra, merge=bool(args.only))
    out.print(table(sections, f"newsmon bench — {os.cpu_count()} CPUs, load {load_before[0]:.1f} at start"))
    out.print(f"figures written to {args.output}; total {total:.0f} s")
    return 1 if any(s.error for s in sections) else 0


def overall(watch: ProcessWatch, total: float, load_before: tuple[float, float, float]) -> Section:
    section = Section("resources")
    pool_mb = watch.section_peaks.get(throughput.POOL_RUN)
    # Left out when unmeasured (a run of some sections), so a merged file keeps the last figure.
    section.data = {
        "peak_rss_mb": pool_mb,
        "peak_rss_mb_whole_bench": watch.peak_mb,
        "peak_rss_whole_bench_section": watch.peak_section,
        "peak_rss_mb_by_section": watch.section_peaks,
        "elasticsearch_peak_rss_mb": watch.server_peak_mb,
    }
    section.data = {k: v for k, v in section.data.items() if v is not None}
    section.rows = [
        Row(
            "bench runtime (s)",
            fmt(total, 0),
            f"load average {load_before[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end, {os.cpu_count()} CPUs",
            f"< {RUNTIME_TARGET_S:.0f} s",
            total < RUNTIME_TARGET_S,
        ),
    ]
    # The RSS target is the pipeline run's: sections run without it show no such row.
    if pool_mb is not None:
        rss = Row(
            "peak RSS during the pipeline run, bench + workers (MB)",
            fmt(pool_mb, 0),
            f"whole bench: {fmt(watch.peak_mb, 0)} MB ({watch.peak_section}); "
            f"Elasticsearch node, apart: {fmt(watch.server_peak_mb, 0)} MB",
            f"≤ {RSS_TARGET_MB:,.0f} MB",
            pool_mb <= RSS_TARGET_MB,
        )
        section.rows.insert(0, rss)
    return section


if __name__ == "__main__":
    sys.exit(main())
