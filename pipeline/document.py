"""The shape of an article document in the index (config/templates/articles.json).

Kept apart from `index` so that extraction workers, which build documents, never
import the Elasticsearch client.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from pipeline.models import NAME_FREE_KEYWORDS, Article, Relevance, Tags, TextFacts
from pipeline.stories import Fingerprint
from pipeline.watchlist import ENTITY_TYPES, TAGGER_REVISION


def build_document(article: Article, tags: Tags, now: datetime | None = None) -> dict[str, Any]:
    """The JSON document for one article, matching config/templates/articles.json."""
    domain = article.domain or urlsplit(article.final_url or article.url).hostname or ""
    return {
        "url": article.url,
        "final_url": article.final_url,
        "title": article.title,
        "title_full": article.title_full or article.title,
        "body": article.body,
        "summary": article.summary,
        "author": article.author,
        "published_at": article.published_at.isoformat(),
        "published_at_source": article.published_at_source,
        "date_flags": article.date_flags,
        "fetched_at": article.fetched_at.isoformat() if article.fetched_at else None,
        "indexed_at": (now or datetime.now(UTC)).isoformat(),
        "source": {
            "name": article.source_name,
            "domain": domain or None,
            "kind": article.source_kind,
            "site_name": article.site_name,
            "feeds": article.feeds,
        },
        "extraction": article.extraction.value,
        "extraction_reason": article.extraction_reason,
        "extraction_attempts": article.extraction_attempts,
        "fetch": article.fetch or None,
        **tag_fields(tags, article.published_at),
    }


def tag_fields(tags: Tags, published: datetime | None) -> dict[str, Any]:
    """The part of a document that tagging owns (what `retag` rewrites); `published` dates its marks."""
    type_of = {i: kind for kind, ids in tags.entities.items() for i in ids}
    # Every type, empty ones too: a partial update merges objects, and would keep a type no longer named.
    entities = {kind: tags.entities.get(kind, []) for kind in ENTITY_TYPES}
    return {
        "language": tags.language,
        "script": tags.script,
        "keywords": tags.keywords,
        "entities": entities,
        "entity_ids": sorted(tags.mentions),
        "entity_labels": [tags.labels[i] for i in sorted(tags.mentions)],
        # Per type, for panels like "top people": Lens cannot aggregate the nested mentions.
        "entity_labels_by_type": {kind: [tags.labels[i] for i in ids] for kind, ids in entities.items()},
        # Nested, so that a query for an entity's count sees that entity's count only.
        "entity_mentions": [
            {"id": i, "label": tags.labels[i], "type": type_of.get(i), "count": n}
            for i, n in sorted(tags.mentions.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "watch_terms": tags.watch_terms,
        "relevance": asdict(tags.relevance),
        "watchlist_version": tags.watchlist_version,
        # Nested, so that an aggregation counts articles per name.
        "discovered": [asdict(d) for d in tags.discovered],
        # Read back as doc values by story assignment: no _source (with its body) is loaded.
        "story_fingerprint": Fingerprint.of_article(
            tags.mentions, tags.story_marks, published, tags.title_entities
        ).terms(),
        # In _source only (the mapping leaves them out): what a retag for changed names reads back.
        "story_marks": tags.story_marks,
        "tagger_revision": TAGGER_REVISION,
    }


VERSION_FIELDS = ("watchlist_version", "tagger_revision")  # what tagged a document, not what it says
# The names of tag_fields(), read from what it returns for an article that names nothing.
TAG_FIELDS = tuple(tag_fields(Tags("und", "Zyyy", {}, {}, {}, [], [], Relevance(False, 0.0, [], []), ""), None))


def changed_tag_fields(fields: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """The tag fields that differ from the stored ones, with what tagged them; none when no tag changed."""
    changed = {k: v for k, v in fields.items() if stored.get(k) != v and k not in VERSION_FIELDS}
    return changed | {k: fields[k] for k in VERSION_FIELDS} if changed else {}


def stored_facts(source: dict[str, Any]) -> TextFacts | None:
    """The TextFacts a stored document holds, when this code wrote them and no name can change them."""
    if source.get("tagger_revision") != TAGGER_REVISION or source.get("language") not in NAME_FREE_KEYWORDS:
        return None
    return TextFacts(source["language"], source["script"], source["keywords"], source["story_marks"])


def language_tag(doc: dict[str, Any]) -> str:
    """zh-Hans, zh-Hant, ja, en …: Chinese by its script, as readers tell them apart."""
    language = str(doc.get("language") or "und")
    script = doc.get("script")
    return f"{language}-{script}" if language == "zh" and script in ("Hans", "Hant") else language
