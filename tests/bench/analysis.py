"""Section: what newsmon's analyzers cost beside the built-in standard analyzer.

The same documents (seeds and the labelled corpus, several copies) are indexed into three
indices on the bench's node: newsmon_text on title/body/summary (the template's settings),
the standard analyzer alone (searches only in one script), and the alternative the issue
names: the standard analyzer on the text plus a second field holding its simplified form.
Figures: store size after a force-merge to one segment, the node's indexing time for the
index, and the node process's CPU seconds over bulk + refresh + merge. The variants run
alternately, ROUNDS times, and the medians are reported.
"""

from __future__ import annotations

import json
import os
import statistics
import uuid
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch, helpers

from pipeline.config import PROJECT_ROOT
from pipeline.seeds import read_seeds
from pipeline.text import normalise
from tests.bench.figures import Row, Section, fmt, ratio
from tests.corpus import load_articles

COPIES = 6
ROUNDS = 3
TEXT_FIELDS = ("title", "body", "summary")
_TICKS = os.sysconf("SC_CLK_TCK")


def documents() -> list[dict[str, str]]:
    texts = [(s.title, s.body) for s in read_seeds()] + [(a.title, a.body) for a in load_articles()]
    return [{"title": t, "body": b, "summary": b[:200]} for _ in range(COPIES) for t, b in texts]


def variants() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """name -> (index settings, mappings)."""
    template = json.loads((PROJECT_ROOT / "config" / "templates" / "articles.json").read_text(encoding="utf-8"))
    newsmon_props = {f: template["template"]["mappings"]["properties"][f] for f in TEXT_FIELDS}
    for spec in newsmon_props.values():
        spec.pop("fields", None)
    standard = {f: {"type": "text"} for f in TEXT_FIELDS}
    base = {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "-1"}
    return {
        "newsmon": ({**base, "analysis": template["template"]["settings"]["analysis"]}, {"properties": newsmon_props}),
        "standard": (base, {"properties": standard}),
        "two_fields": (
            base,
            {"properties": {**standard, **{f"{f}_simplified": {"type": "text"} for f in TEXT_FIELDS}}},
        ),
    }


def _cpu_seconds(root: int) -> float:
    """utime + stime of `root` and every process under it (the launcher forks the server JVM)."""
    stats: dict[int, tuple[int, float]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(proc.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS)
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _) in stats.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier += children
    return sum(stats[pid][1] for pid in tree if pid in stats)


def _index_once(
    es: Elasticsearch, pid: int, name: str, spec: tuple[dict[str, Any], dict[str, Any]]
) -> dict[str, float]:
    index = f"bench-analysis-{name}-{uuid.uuid4().hex[:6]}"
    es.indices.create(index=index, settings=spec[0], mappings=spec[1])
    docs = documents()
    if name == "two_fields":
        docs = [{**d, **{f"{f}_simplified": normalise(d[f]) for f in TEXT_FIELDS}} for d in docs]
    before = _cpu_seconds(pid)
    helpers.bulk(es, ({"_index": index, "_source": d} for d in docs), chunk_size=200)
    es.indices.refresh(index=index)
    es.indices.forcemerge(index=index, max_num_segments=1)
    cpu = _cpu_seconds(pid) - before
    stats = es.indices.stats(index=index, metric=["store", "indexing", "docs"])["indices"][index]["primaries"]
    es.indices.delete(index=index)
    return {
        "bytes": float(stats["store"]["size_in_bytes"]),
        "index_ms": float(stats["indexing"]["index_time_in_millis"]),
        "cpu_s": cpu,
        "docs": float(stats["docs"]["count"]),
    }


def measure(es_url: str, pid: int) -> Section:
    es = Elasticsearch(es_url, request_timeout=300)
    specs = variants()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in specs}
    for _ in range(ROUNDS):
        for name, spec in specs.items():
            runs[name].append(_index_once(es, pid, name, spec))
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    section = Section("analysis")
    for name, figures in med.items():
        for key, value in figures.items():
            section.data[f"analysis_{key}_{name}"] = value
    section.data["analysis_size_vs_standard"] = ratio(med["newsmon"]["bytes"], med["standard"]["bytes"])
    section.data["analysis_index_ms_vs_standard"] = ratio(med["newsmon"]["index_ms"], med["standard"]["index_ms"])
    section.data["analysis_cpu_vs_standard"] = ratio(med["newsmon"]["cpu_s"], med["standard"]["cpu_s"])
    section.data["analysis_size_vs_two_fields"] = ratio(med["newsmon"]["bytes"], med["two_fields"]["bytes"])
    section.data["analysis_cpu_vs_two_fields"] = ratio(med["newsmon"]["cpu_s"], med["two_fields"]["cpu_s"])
    docs = int(med["newsmon"]["docs"])

    def versus(key: str, scale: float, digits: int) -> str:
        return (
            f"standard: {fmt(med['standard'][key] * scale, digits)}; "
            f"standard + simplified copy: {fmt(med['two_fields'][key] * scale, digits)}"
        )

    section.rows = [
        Row(
            f"index size, {docs:,} docs, newsmon_text (MB)",
            fmt(med["newsmon"]["bytes"] / 1e6, 2),
            versus("bytes", 1e-6, 2),
        ),
        Row(
            "indexing time in the node, newsmon_text (ms)", fmt(med["newsmon"]["index_ms"], 0), versus("index_ms", 1, 0)
        ),
        Row(
            "node CPU for bulk + refresh + merge, newsmon_text (s)",
            fmt(med["newsmon"]["cpu_s"], 2),
            versus("cpu_s", 1, 2),
        ),
    ]
    return section
