"""Section 5: tagging cost per 3,000-character Chinese article, segmentation CPU, and tagger start-up.

Both are measured in fresh interpreters: start-up by definition, and the per-article
cost so that the bench process never holds a tagger of its own (it would count in the
peak RSS of the pipeline section, where a real run's main process holds none).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.config import PROJECT_ROOT
from tests.bench.figures import Row, Section, fmt, ratio

ARTICLE_CHARS = 3000
WARMUP, ROUNDS = 3, 30
SEGMENT_ROUNDS = 3  # passes over the corpus articles, jieba and ours taking turns
TITLE = "中方对日出口管制"
# Import and build timed inside the child; the wall time around it adds interpreter start.
STARTUP_CODE = """
import json, time
t0 = time.perf_counter()
from pipeline.config import Settings
from pipeline.tag import get_tagger
t1 = time.perf_counter()
get_tagger(Settings())
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "build": t2 - t1}))
"""


def article_text() -> str:
    """3,000 characters of real Chinese news text (the seeds, run together)."""
    from pipeline.seeds import read_seeds

    text = "\n\n".join(a.body for a in read_seeds())
    while len(text) < ARTICLE_CHARS:
        text += "\n\n" + text
    return text[:ARTICLE_CHARS]


def per_article_ms() -> dict[str, float]:
    """Tagger and bare jieba.lcut ms per article, warmed up, interleaved round by round (child side)."""
    import jieba

    from pipeline.config import Settings
    from pipeline.tag import get_tagger

    settings = Settings()
    text = article_text()
    tagger = get_tagger(settings)
    bare = jieba.Tokenizer()
    bare.tmp_dir = str(settings.cache_dir)
    for _ in range(WARMUP):
        tagger.tag(TITLE, text)
        bare.lcut(text)
        bare.lcut(text, HMM=False)
    ours: list[float] = []
    floor: list[float] = []
    no_hmm: list[float] = []
    for _ in range(ROUNDS):
        for times, work in (
            (ours, lambda: tagger.tag(TITLE, text)),
            (floor, lambda: bare.lcut(text)),
            (no_hmm, lambda: bare.lcut(text, HMM=False)),
        ):
            started = time.perf_counter()
            work()
            times.append(time.perf_counter() - started)
    return {
        "tag_ms": statistics.median(ours) * 1000,
        "jieba_ms": statistics.median(floor) * 1000,
        "jieba_no_hmm_ms": statistics.median(no_hmm) * 1000,
        "chars": len(text),
    }


def segmentation_cpu() -> dict[str, float]:
    """CPU seconds of segmentation and of whole tagging over the corpus articles, with jieba-fast (ours)
    and with jieba alone on the same dictionary, and on how many articles words and tags are the same
    (child side)."""
    from pipeline.config import Settings
    from pipeline.tag import Tagger
    from pipeline.text import normalise
    from pipeline.watchlist import load_watchlist
    from tests.corpus import load_articles

    settings = Settings()
    ours, alone = (
        Tagger(load_watchlist(settings.config_file("watchlist.yaml")), settings.config_dir, settings.cache_dir)
        for _ in range(2)
    )
    alone.segmenter._fast = alone.segmenter.tokenizer  # every run to jieba: the segmenter before jieba-fast
    articles = load_articles()
    texts = [normalise(a.text) for a in articles]
    for tagger in (ours, alone):  # warm: the POS model, discovery's cache of unknown words
        for a in articles:
            tagger.tag(a.title, a.body)
    same_words = sum(ours.segmenter.words(t) == alone.segmenter.words(t) for t in texts)
    same_tags = sum(ours.tag(a.title, a.body) == alone.tag(a.title, a.body) for a in articles)
    cpu = {"segment_cpu_s": 0.0, "segment_jieba_cpu_s": 0.0, "tag_cpu_s": 0.0, "tag_jieba_cpu_s": 0.0}
    for _ in range(SEGMENT_ROUNDS):
        for tagger, suffix in ((ours, "cpu_s"), (alone, "jieba_cpu_s")):
            started = time.process_time()
            for text in texts:
                tagger.segmenter.words(text)
            cpu[f"segment_{suffix}"] += time.process_time() - started
            started = time.process_time()
            for a in articles:
                tagger.tag(a.title, a.body)
            cpu[f"tag_{suffix}"] += time.process_time() - started
    return {
        **cpu,
        "segment_same": same_words,
        "tags_same": same_tags,
        "segment_articles": len(texts),
        "segment_chars": sum(map(len, texts)) * SEGMENT_ROUNDS,
    }


def child(cache_dir: Path, *args: str) -> tuple[float, dict[str, Any]]:
    """(wall seconds, the JSON it printed) of one fresh interpreter."""
    env = {**os.environ, "NEWSMON_CACHE_DIR": str(cache_dir), "NEWSMON_CONFIG_DIR": str(PROJECT_ROOT / "config")}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=300
    )
    return time.perf_counter() - started, json.loads(done.stdout.strip().splitlines()[-1])


def startup(cache_dir: Path, *, cold: bool) -> dict[str, float]:
    """One fresh interpreter building the tagger; `cold` removes the jieba cache first."""
    if cold:
        shutil.rmtree(cache_dir, ignore_errors=True)
    wall, inner = child(cache_dir, "-c", STARTUP_CODE)
    return {"wall": wall, **inner}


def measure(cache_dir: Path) -> Section:
    """Tagging figures; leaves a warm jieba cache in `cache_dir` for later sections."""
    section = Section("tagging")
    runs: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    for _ in range(2):  # alternate, so neither kind gets the quieter moment
        runs["cold"].append(startup(cache_dir, cold=True))
        runs["warm"].append(startup(cache_dir, cold=False))
    warm = {k: statistics.mean(r[k] for r in runs["warm"]) for k in ("wall", "import", "build")}
    cold = {k: statistics.mean(r[k] for r in runs["cold"]) for k in ("wall", "import", "build")}
    _, speed = child(cache_dir, "-m", "tests.bench.tagging")
    tag_ms, jieba_ms = speed["tag_ms"], speed["jieba_ms"]
    _, seg = child(cache_dir, "-m", "tests.bench.tagging", "segmentation")
    tagged = seg["segment_articles"] * SEGMENT_ROUNDS
    section.data = {
        "segment_cpu_seconds": seg["segment_cpu_s"],
        "segment_jieba_cpu_seconds": seg["segment_jieba_cpu_s"],
        "segment_ratio": ratio(seg["segment_cpu_s"], seg["segment_jieba_cpu_s"]),
        "segment_same_articles": seg["segment_same"],
        "tag_cpu_ms_per_corpus_article": seg["tag_cpu_s"] * 1000 / tagged,
        "tag_jieba_cpu_ms_per_corpus_article": seg["tag_jieba_cpu_s"] * 1000 / tagged,
        "tags_same_articles": seg["tags_same"],
        "tag_ms_per_3000_chars": tag_ms,
        "jieba_lcut_ms_per_3000_chars": jieba_ms,
        "jieba_lcut_no_hmm_ms_per_3000_chars": speed["jieba_no_hmm_ms"],
        "startup_seconds": warm["wall"],
        "startup_cold_seconds": cold["wall"],
        "startup_split": {"warm": warm, "cold": cold},
    }
    section.rows = [
        Row(
            f"tagging ms per {speed['chars']:,}-char Chinese article",
            fmt(tag_ms, 1),
            f"jieba.lcut alone: {fmt(jieba_ms, 1)} ms, {fmt(speed['jieba_no_hmm_ms'], 1)} ms with HMM=False "
            f"(tagger/lcut {fmt(ratio(tag_ms, jieba_ms), 2)}×)",
        ),
        Row(
            f"segmentation CPU (s), {seg['segment_articles']} corpus articles × {SEGMENT_ROUNDS}, "
            f"{seg['segment_chars']:,} chars, HMM off",
            f"jieba-fast: {fmt(seg['segment_cpu_s'], 2)}",
            f"jieba 0.42.1 alone: {fmt(seg['segment_jieba_cpu_s'], 2)} "
            f"({fmt(ratio(seg['segment_cpu_s'], seg['segment_jieba_cpu_s']), 2)}×); "
            f"same words on {seg['segment_same']} of {seg['segment_articles']} articles",
        ),
        Row(
            "tagging CPU ms per corpus article (only Chinese text is segmented)",
            f"jieba-fast: {fmt(section.data['tag_cpu_ms_per_corpus_article'], 2)}",
            f"jieba alone: {fmt(section.data['tag_jieba_cpu_ms_per_corpus_article'], 2)} "
            f"({fmt(ratio(seg['tag_cpu_s'], seg['tag_jieba_cpu_s']), 2)}×); "
            f"same tags on {seg['tags_same']} of {seg['segment_articles']} articles",
        ),
        Row(
            "tagger start-up, fresh process, warm cache (s)",
            fmt(warm["wall"], 2),
            f"cold cache: {fmt(cold['wall'], 2)} s; warm = imports {fmt(warm['import'], 2)} "
            f"+ build {fmt(warm['build'], 2)} + interpreter",
        ),
    ]
    return section


if __name__ == "__main__":
    print(json.dumps(segmentation_cpu() if sys.argv[1:] == ["segmentation"] else per_article_ms()))
