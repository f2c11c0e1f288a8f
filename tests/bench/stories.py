"""Section: story grouping on the labelled real corpus, pairwise against its events.

Every article is tagged as the pipeline tags it, then the articles are grouped in order of
publication by the shipped rule (pipeline.stories), as one index holding the whole corpus
would group them. A pair of articles is right when both share a labelled event and one
story, or neither; unrelated articles are events of their own. Held-out events (a quarter,
by hash) were never looked at while choosing the rule's constants.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from datetime import time as day_time
from pathlib import Path

from pipeline.config import PROJECT_ROOT
from pipeline.stories import EntityWeights, Fingerprint, NewArticle, assign_batch, story_marks
from pipeline.tag import Tagger
from pipeline.text import normalise
from pipeline.watchlist import load_watchlist
from tests.bench.figures import Row, Section, fmt
from tests.corpus import CorpusArticle, load_articles

CONFIG_DIR = PROJECT_ROOT / "config"
PRECISION_TARGET = 0.95
RECALL_TARGET = 0.8
CPU_SHARE_TARGET = 0.10


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


def measure(cache_dir: Path) -> Section:
    section = Section("stories")
    tagger = Tagger(load_watchlist(CONFIG_DIR / "watchlist.yaml"), CONFIG_DIR, cache_dir)
    articles = list(load_articles())
    tag_cpu = marks_cpu = 0.0
    new = []
    for article in articles:
        began = time.process_time()
        tags = tagger.tag(article.title, article.body)
        tag_cpu += time.process_time() - began
        normalised = normalise(article.text)
        began = time.process_time()
        story_marks(normalised)  # what the tagger spends on marks, timed apart
        marks_cpu += time.process_time() - began
        published = datetime.combine(article.published, day_time(), tzinfo=UTC)
        new.append(NewArticle(article.id, published, Fingerprint(tags.mentions, frozenset(tags.story_marks))))
    began = time.process_time()
    weights = EntityWeights.of(a.fingerprint for a in new)
    story_of = {i: a.story_id for i, a in assign_batch(new, [], weights).items()}
    assign_cpu = time.process_time() - began
    n = len(articles)
    story_ms = (marks_cpu + assign_cpu) / n * 1000
    tag_ms = tag_cpu / n * 1000
    share = story_ms / tag_ms if tag_ms else None
    stories = len(set(story_of.values()))
    events = len({a.event or a.id for a in articles})
    section.data |= {
        "story_articles": n,
        "story_events": events,
        "story_count": stories,
        "story_ms_per_article": story_ms,
        "story_tag_ms_per_article": tag_ms,
        "story_cpu_share_of_tagging": share,
    }
    for split, chosen in (("all", articles), ("held_out", [a for a in articles if a.held_out])):
        precision, recall, pairs = pairwise(chosen, story_of)
        suffix = "" if split == "all" else "_held_out"
        section.data |= {f"story_pairwise_precision{suffix}": precision, f"story_pairwise_recall{suffix}": recall}
        shown = split == "all"
        section.rows += [
            Row(
                f"story pairwise precision ({split}, {len(chosen)} articles, {pairs} same-event pairs)",
                fmt(precision, 3),
                "",
                f"≥ {PRECISION_TARGET}" if shown else "",
                (precision or 0) >= PRECISION_TARGET if shown else None,
            ),
            Row(
                f"story pairwise recall ({split})",
                fmt(recall, 3),
                "",
                f"≥ {RECALL_TARGET}" if shown else "",
                (recall or 0) >= RECALL_TARGET if shown else None,
            ),
        ]
    section.rows += [
        Row("stories formed / labelled events (all)", f"{stories} / {events}"),
        Row(
            "story grouping CPU per article (ms), share of tagging CPU",
            f"{story_ms:.2f} ({fmt((share or 0) * 100, 1)} %)",
            f"tagging alone: {tag_ms:.1f} ms per article",
            f"≤ {CPU_SHARE_TARGET:.0%}",
            share is not None and share <= CPU_SHARE_TARGET,
        ),
    ]
    return section
