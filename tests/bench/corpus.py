"""The pages the bench feeds through the pipeline: the extraction benchmark, and
Chinese articles generated from the seeds, each made distinct."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.models import FeedEntry, Page
from pipeline.process import Job
from pipeline.seeds import read_seeds
from pipeline.urls import canonical_url
from tests.extraction_score import BenchPage, benchmark_dir, load_pages
from tests.pages import article_html

GENERATED_HOST = "http://news.bench.test"
_SENTENCE_END = re.compile(r"(?<=[。！？!?])")


@dataclass(frozen=True)
class Article:
    """One page to process: its address, HTML and the feed's language for it."""

    url: str
    title: str
    html: str
    language: str
    summary: str = ""


def benchmark_pages() -> list[BenchPage]:
    """All pages of the shared extraction benchmark.

    Raises:
        FileNotFoundError: this machine has no copy of the benchmark.
    """
    directory = benchmark_dir()
    if directory is None:
        raise FileNotFoundError("shared/benchmarks/article-extraction not found beside the repo or in /work/shared")
    return load_pages(directory)


def seed_paragraphs() -> list[tuple[str, list[str]]]:
    """(title, paragraphs) of each cleaned seed; a seed captured as one long paragraph
    is cut at sentence ends into groups, so that shuffling changes it too."""
    out = []
    for seed in read_seeds():
        paragraphs = [p for p in seed.body.split("\n\n") if p.strip()]
        if len(paragraphs) < 4:
            sentences = [s for s in _SENTENCE_END.split(" ".join(paragraphs)) if s.strip()]
            paragraphs = ["".join(sentences[i : i + 3]) for i in range(0, len(sentences), 3)]
        out.append((seed.title, paragraphs))
    return out


def generated_articles(count: int) -> list[Article]:
    """`count` distinct Chinese articles: a seed's paragraphs shuffled, with a numbered line."""
    seeds = seed_paragraphs()
    articles = []
    for i in range(count):
        title, paragraphs = seeds[i % len(seeds)]
        rng = random.Random(i)  # fixed per page: the same corpus on every run
        body = list(paragraphs)
        rng.shuffle(body)
        body.insert(rng.randrange(len(body) + 1), f"（本报第{i + 1}期稿件，编号 {i + 1:05d}。）")
        page_title = f"{title}（{i + 1}）"
        articles.append(
            Article(
                url=f"{GENERATED_HOST}/{i % 7}/{i + 1:05d}.html",
                title=page_title,
                html=article_html(page_title, body),
                language="zh-Hans",
                summary=body[0][:120],
            )
        )
    return articles


def benchmark_articles(pages: list[BenchPage]) -> list[Article]:
    # The feed entry would give a title; the benchmark has none, so the page's own is used.
    return [Article(url=p.url or f"http://benchmark.test/{p.id}", title="", html=p.html, language="en") for p in pages]


def jobs(articles: list[Article], fetched_at: datetime | None = None) -> list[Job]:
    """The pipeline's own work items: a feed entry and its fetched page, as fetch_pages makes them."""
    fetched_at = fetched_at or datetime.now(UTC)
    out = []
    for article in articles:
        url = canonical_url(article.url)
        entry = FeedEntry(
            feed="bench",
            url=url,
            link=article.url,
            guid=article.url,
            title=article.title,
            summary=article.summary,
            published=None,
            language=article.language,
            timezone="Asia/Shanghai" if article.language.startswith("zh") else "UTC",
        )
        data = article.html.encode("utf-8")
        page = Page(
            url=url,
            final_url=url,
            status_code=200,
            content_type="text/html",
            charset="utf-8",
            html=article.html,
            bytes=len(data),
            truncated=False,
            fetched_at=fetched_at,
        )
        out.append(Job(entry, page))
    return out
