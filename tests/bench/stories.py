"""Section: story grouping on the labelled real corpus, in the index, pairwise against its events.

Every article is tagged as the pipeline tags it and indexed through `bulk_index` in chunks of
16 in order of publication, as a monitor that saw them arrive would index them; its stories
are then read back from the index. A pair of articles is right when both share a labelled
event and one story, or neither; unrelated articles are events of their own. The corpus is
cut into blocks at every week without an article (no story can span one), and the rule is
tuned on the blocks before the last quarter of the corpus by date; the blocks that begin
after it are held out (tests.corpus.story_held_out), run as few times as possible. The fresh
part (tests/data/articles/fresh, gathered after the rule was chosen) is grouped in an index of
its own, so the other parts' figures do not depend on it.

The CPU that stories add (the end-of-run merge check included) is the same documents indexed
again by the bare bulk helper (one refresh at the end, as before stories), subtracted: this
process and the node together.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch, helpers

from pipeline.config import PROJECT_ROOT, Settings
from pipeline.es import Indices, connect
from pipeline.index import bulk_index
from pipeline.setup import setup_indices
from pipeline.storyindex import RunStories
from pipeline.storymerge import converge
from pipeline.tag import Tagger
from pipeline.watchlist import load_watchlist
from tests.bench.analysis import _cpu_seconds
from tests.bench.figures import Row, Section, fmt
from tests.corpus import (
    FRESH_DIR,
    CorpusArticle,
    indexed_document,
    load_articles,
    story_blocks,
    story_held_out,
)

CONFIG_DIR = PROJECT_ROOT / "config"
CHUNK = 16  # NEWSMON_PROCESS_CHUNK's default
PRECISION_TARGET = 0.95
RECALL_TARGET = 0.8
CPU_SHARE_TARGET = 0.10

Document = tuple[str, dict[str, Any]]


def pairwise(articles: list[CorpusArticle], story_of: dict[str, str]) -> tuple[float | None, float | None, int]:
    """(precision, recall, labelled pairs) of same-story pairs against same-event pairs."""
    tp = fp = fn = 0
    for a, b in itertools.combinations(articles, 2):
        same_event = (a.event or a.id) == (b.event or b.id)
        same_story = story_of[a.id] == story_of[b.id]
        tp += same_event and same_story
        fp += same_story and not same_event
        fn += same_event and not same_story
    return (tp / (tp + fp) if tp + fp else None, tp / (tp + fn) if tp + fn else None, tp + fn)


def confusion(articles: list[CorpusArticle], story_of: dict[str, str]) -> tuple[Counter[str], Counter[str]]:
    """Where the errors are: each event's missed pairs (split), each pair of events' false pairs (merged)."""
    split: Counter[str] = Counter()
    merged: Counter[str] = Counter()
    for a, b in itertools.combinations(articles, 2):
        event_a, event_b = a.event or a.id, b.event or b.id
        same_story = story_of[a.id] == story_of[b.id]
        if event_a == event_b and not same_story:
            split[event_a] += 1
        elif event_a != event_b and same_story:
            merged[" + ".join(sorted((event_a, event_b)))] += 1
    return split, merged


def tagged_documents(tagger: Tagger, articles: tuple[CorpusArticle, ...]) -> tuple[list[Document], float]:
    """Articles as index documents in order of publication, and the CPU seconds tagging took."""
    docs, cpu = [], 0.0
    for article in sorted(articles, key=lambda a: (a.published, a.id)):
        began = time.process_time()
        tags = tagger.tag(article.title, article.body)
        cpu += time.process_time() - began
        docs.append((article.id, indexed_document(article, tags)))
    return docs, cpu


def fresh_indices(es_url: str, cache_dir: Path) -> tuple[Elasticsearch, Indices]:
    settings = Settings(es_url=es_url, index_prefix=f"bench-stories-{uuid.uuid4().hex[:6]}", cache_dir=cache_dir)
    es = connect(settings)
    setup_indices(es, settings)
    return es, Indices(settings.index_prefix)


def index_cpu(node_pid: int, work: Any) -> float:
    """CPU seconds of this process and the node while `work()` runs."""
    began, node_before = time.process_time(), _cpu_seconds(node_pid)
    work()
    return time.process_time() - began + _cpu_seconds(node_pid) - node_before


def index_with_stories(es: Elasticsearch, indices: Indices, docs: list[Document]) -> None:
    """As pipeline.lifecycle indexes a run's chunks: one refresh, then converge."""
    run = RunStories()
    for start in range(0, len(docs), CHUNK):
        bulk_index(es, indices, [(i, dict(d)) for i, d in docs[start : start + CHUNK]], run=run)
    es.indices.refresh(index=indices.articles)
    converge(es, indices, run)


def stories_of(es: Elasticsearch, indices: Indices, size: int) -> dict[str, str]:
    hits = es.search(index=indices.articles, size=size, source_includes=["story.id"])["hits"]["hits"]
    return {h["_id"]: h["_source"]["story"]["id"] for h in hits}


def measure(es_url: str, node_pid: int, cache_dir: Path) -> Section:
    section = Section("stories")
    tagger = Tagger(load_watchlist(CONFIG_DIR / "watchlist.yaml"), CONFIG_DIR, cache_dir)
    docs, tag_cpu = tagged_documents(tagger, load_articles())
    chunks = [docs[i : i + CHUNK] for i in range(0, len(docs), CHUNK)]
    es, indices = fresh_indices(es_url, cache_dir)
    bare_es, bare = fresh_indices(es_url, cache_dir)
    part_es, part = fresh_indices(es_url, cache_dir)  # the fresh part, on its own

    def with_stories() -> None:
        index_with_stories(es, indices, docs)

    def without_stories() -> None:  # as pipeline.lifecycle indexed chunks before stories: one refresh at the end
        for chunk in chunks:
            helpers.bulk(bare_es, ({"_index": bare.articles, "_id": i, "_source": d} for i, d in chunk))
        bare_es.indices.refresh(index=bare.articles)

    bare_cpu = index_cpu(node_pid, without_stories)
    story_cpu = index_cpu(node_pid, with_stories) - bare_cpu
    story_of = stories_of(es, indices, len(docs))
    fresh_docs, _ = tagged_documents(tagger, load_articles(FRESH_DIR))
    index_with_stories(part_es, part, fresh_docs)
    story_of |= stories_of(part_es, part, len(fresh_docs))
    for prefix in (indices.prefix, bare.prefix, part.prefix):
        es.indices.delete(index=f"{prefix}-*")

    articles = list(load_articles())
    n = len(articles)
    story_ms, pipeline_ms = story_cpu / n * 1000, (tag_cpu + bare_cpu) / n * 1000
    share = story_ms / pipeline_ms if pipeline_ms else None
    stories, events = len(set(story_of.values())), len({a.event or a.id for a in articles})
    section.data |= {
        "story_articles": n,
        "story_events": events,
        "story_count": stories,
        "story_ms_per_article": story_ms,
        "story_tag_and_index_ms_per_article": pipeline_ms,
        "story_cpu_share": share,
    }
    held = story_held_out()
    parts = (
        ("all", articles),
        ("tuning", [a for a in articles if a.id not in held]),
        ("held_out", [a for a in articles if a.id in held]),
        ("fresh", list(load_articles(FRESH_DIR))),
    )
    section.data["story_held_out_ids"] = sorted(held)
    for part, chosen in parts:
        precision, recall, pairs = pairwise(chosen, story_of)
        suffix = "" if part == "all" else f"_{part}"
        section.data |= {f"story_pairwise_precision{suffix}": precision, f"story_pairwise_recall{suffix}": recall}
        shown = part == "all"
        section.rows += [
            Row(
                f"story pairwise precision ({part}, {len(chosen)} articles, {pairs} same-event pairs)",
                fmt(precision, 3),
                "",
                f"≥ {PRECISION_TARGET}" if shown else "",
                (precision or 0) >= PRECISION_TARGET if shown else None,
            ),
            Row(
                f"story pairwise recall ({part})",
                fmt(recall, 3),
                "",
                f"≥ {RECALL_TARGET}" if shown else "",
                (recall or 0) >= RECALL_TARGET if shown else None,
            ),
        ]
    # Of the tuning part only: what a session tuning the rule may look at.
    split, merged = confusion(parts[1][1], story_of)
    section.data |= {"story_missed_pairs_by_event": dict(split), "story_false_pairs_by_events": dict(merged)}
    held_blocks = sum(1 for block in story_blocks() if block[0].id in held)
    section.rows += [
        Row(
            "split: blocks of the corpus with no week between articles, held out after 3/4 by date",
            f"tuning {n - len(held)} articles, held out {len(held)} ({held_blocks} of {len(story_blocks())} blocks)",
        ),
        Row("stories formed / labelled events (all)", f"{stories} / {events}"),
        Row("most missed pairs (events split, tuning)", "; ".join(f"{e} {n}" for e, n in split.most_common(3))),
        Row("most false pairs (events folded, tuning)", "; ".join(f"{e} {n}" for e, n in merged.most_common(3))),
        Row(
            "CPU stories add per article, this process + node (ms)",
            f"{story_ms:.2f} ({fmt((share or 0) * 100, 1)} %)",
            f"tagging + indexing without stories: {pipeline_ms:.1f} ms",
            f"≤ {CPU_SHARE_TARGET:.0%}",
            share is not None and share <= CPU_SHARE_TARGET,
        ),
    ]
    return section
