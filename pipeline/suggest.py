"""`newsmon watchlist suggest`: names discovered in relevant articles that the watchlist lacks.

One aggregation over the index (nested `discovered`, newest article per name), not a scan.
Names are merged across spellings that normalise alike (三菱造船 / 三菱造船), and a name the
current watchlist already covers is left out even before `newsmon retag` has run.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from elasticsearch import Elasticsearch

from pipeline.config import ConfigError
from pipeline.es import Indices
from pipeline.models import NameType
from pipeline.salience import Layout, Mention, evidence_text
from pipeline.tag import Tagger
from pipeline.text import normalise, normalise_mapped

NAMES_PER_QUERY = 2000  # distinct spellings aggregated before merging and ranking
_SINCE = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}
_ASCII_ID = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Suggestion:
    name: str  # the spelling most articles use
    type: NameType
    articles: int  # relevant articles naming it
    names: dict[str, list[str]]  # watchlist language (zh-Hans, zh-Hant, ja, en) -> spellings
    example: str  # a sentence naming it, as its article writes it
    example_url: str

    def watchlist_entry(self) -> str:
        """A YAML entry for config/watchlist.yaml's `entities:` list, ready to paste."""
        ascii_id = _ASCII_ID.sub("_", self.name.lower()).strip("_") if self.name.isascii() else ""
        entry_id = ascii_id or "name_" + hashlib.sha256(normalise(self.name).encode()).hexdigest()[:8]
        entry_type = self.type.value if self.type is not NameType.OTHER else NameType.ORGANISATION.value
        entry = {"id": entry_id, "type": entry_type, "label": self.name, "names": self.names}
        dumped = yaml.safe_dump([entry], allow_unicode=True, sort_keys=False, default_flow_style=None, width=1000)
        notes = [f"# {self.articles} relevant articles; e.g. {self.example_url}"]
        if not ascii_id:
            notes.append("# choose an ascii snake_case id")
        if self.type is NameType.OTHER:
            notes.append("# found as a proper noun of no known kind: check the type")
        return "\n".join(f"  {line}" for line in notes + dumped.rstrip("\n").splitlines())


def parse_since(text: str) -> timedelta:
    """'30d', '12h' or '2w' as a time span.

    Raises:
        ConfigError: any other form, naming it.
    """
    found = _SINCE.match(text)
    if not found:
        raise ConfigError(f"--since {text!r}: give a number of hours, days or weeks, such as 30d, 12h or 2w")
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


def suggest(
    es: Elasticsearch, indices: Indices, tagger: Tagger, since: timedelta, limit: int, now: datetime | None = None
) -> list[Suggestion]:
    """The names to add, most articles first."""
    start = (now or datetime.now(UTC)) - since
    response = es.search(
        index=indices.articles,
        size=0,
        query={
            "bool": {
                "filter": [
                    {"term": {"relevance.relevant": True}},
                    {"range": {"published_at": {"gte": start.isoformat()}}},
                ]
            }
        },
        aggs={
            "discovered": {
                "nested": {"path": "discovered"},
                "aggs": {
                    "name": {
                        "terms": {"field": "discovered.name", "size": NAMES_PER_QUERY},
                        "aggs": {
                            "type": {"terms": {"field": "discovered.type", "size": 1}},
                            "article": {
                                "reverse_nested": {},
                                "aggs": {
                                    "newest": {
                                        "top_hits": {
                                            "size": 1,
                                            "sort": [{"published_at": "desc"}],
                                            "_source": ["url", "title", "body", "language", "script"],
                                        }
                                    }
                                },
                            },
                        },
                    }
                },
            }
        },
    )
    merged: dict[str, list[dict[str, Any]]] = {}
    for bucket in response["aggregations"]["discovered"]["name"]["buckets"]:
        key = normalise(bucket["key"])
        if not tagger.covers_whole(key):
            merged.setdefault(key, []).append(bucket)
    suggestions = [_suggestion(buckets) for buckets in merged.values()]
    suggestions.sort(key=lambda s: (-s.articles, s.name))
    return suggestions[:limit]


def _suggestion(buckets: list[dict[str, Any]]) -> Suggestion:
    """One name from the buckets of its spellings (each article holds one spelling of it)."""
    buckets = sorted(buckets, key=lambda b: (-b["article"]["doc_count"], b["key"]))
    top = buckets[0]
    names: dict[str, list[str]] = {}
    for bucket in buckets:
        source = bucket["article"]["newest"]["hits"]["hits"][0]["_source"]
        names.setdefault(_watchlist_language(source), []).append(bucket["key"])
    example = top["article"]["newest"]["hits"]["hits"][0]["_source"]
    types = top["type"]["buckets"]
    return Suggestion(
        name=top["key"],
        type=NameType(types[0]["key"]) if types else NameType.OTHER,
        articles=sum(b["article"]["doc_count"] for b in buckets),
        names=names,
        example=sentence_naming(example.get("title") or "", example.get("body") or "", top["key"]),
        example_url=example.get("url") or "",
    )


def _watchlist_language(source: dict[str, Any]) -> str:
    language, script = source.get("language"), source.get("script")
    if language == "zh":
        return "zh-Hant" if script == "Hant" else "zh-Hans"
    return "ja" if language == "ja" else "en"


def sentence_naming(title: str, body: str, name: str) -> str:
    """The first sentence of an article that names `name`, as the article writes it."""
    text = f"{title}\n\n{body}"
    norm_text, offsets = normalise_mapped(text)
    key = normalise(name)
    at = norm_text.find(key)
    if at < 0:
        return ""
    layout = Layout(norm_text, title_end=bisect.bisect_left(offsets, len(title)))
    return evidence_text(text, offsets, layout, Mention(start=at, end=at + len(key), entry_id=""))
