"""Load the seed articles: the starting corpus, indexed beside the news."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import yaml
from elasticsearch import Elasticsearch

from pipeline.clutter import clean_plain_text
from pipeline.config import PROJECT_ROOT, ConfigError
from pipeline.document import build_document
from pipeline.es import Indices
from pipeline.index import bulk_index
from pipeline.logs import log_stage
from pipeline.models import Article, Origin, PublishedFrom
from pipeline.tag import Tagger

SEEDS_DIR = PROJECT_ROOT / "seeds"


def read_seeds(seeds_dir: Path = SEEDS_DIR) -> list[Article]:
    """The seeds as articles, clutter removed, ids taken from their file names."""
    meta_path = seeds_dir / "seeds.yaml"
    try:
        meta = yaml.safe_load(meta_path.read_text(encoding="utf-8"))["seeds"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{meta_path}: cannot read the seed list: {exc}") from exc
    articles = []
    for item in meta:
        path = seeds_dir / item["file"]
        stem = path.stem
        body = clean_plain_text(path.read_text(encoding="utf-8"), title=item["title"])
        articles.append(
            Article(
                id=f"seed-{stem}",
                url=f"seed://{stem}",
                title=item["title"],
                body=body,
                source_name=item["source"],
                source_kind=Origin.SEED,
                author=item.get("author"),
                published_at=datetime.fromisoformat(item["published_at"]),
                published_at_source=PublishedFrom.SEED,
                date_flags=["estimated"] if item.get("estimated_date") else [],
            )
        )
    return articles


def load_seeds(es: Elasticsearch, indices: Indices, tagger: Tagger) -> int:
    """Tag and index every seed; loading twice leaves the same documents."""
    docs = []
    for article in read_seeds():
        tags = tagger.tag(article.title, article.body)
        docs.append((article.id, build_document(article, tags)))
    result = bulk_index(es, indices, docs)
    log_stage("seeds", {"indexed": result.indexed, "failed": len(result.rejected)})
    return result.indexed
