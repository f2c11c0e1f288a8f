"""The labelled corpus of real articles is well-formed: what the relevance and story benchmarks rely on."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

import yaml

from tests.corpus import ARTICLES_DIR, LANGUAGES, Kind, load_articles, load_events

ID_SHAPE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def test_every_label_has_its_article_file_and_every_file_a_label() -> None:
    labelled = {article.id for article in load_articles()}
    on_disk = {path.stem for path in ARTICLES_DIR.glob("*.txt")}
    assert labelled == on_disk


def test_ids_are_unique_kebab_case_and_urls_unique() -> None:
    raw = yaml.safe_load((ARTICLES_DIR / "labels.yaml").read_text(encoding="utf-8"))["articles"]
    ids = [entry["id"] for entry in raw]
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    assert [i for i in ids if not ID_SHAPE.match(i)] == []
    urls = [entry["url"] for entry in raw]
    assert [u for u, n in Counter(urls).items() if n > 1] == []
    assert all(u.startswith(("http://", "https://")) for u in urls)


def test_labels_use_known_languages_kinds_and_dates() -> None:
    for article in load_articles():
        assert article.language in LANGUAGES, article.id
        assert isinstance(article.published, dt.date), article.id
        assert not isinstance(article.published, dt.datetime), article.id
        assert article.relevant == (article.kind is Kind.POSITIVE), article.id
        assert (article.event is None) == (article.kind is Kind.UNRELATED), article.id
        assert article.outlet.strip(), article.id


def test_article_files_are_a_title_line_a_blank_line_and_a_body() -> None:
    for article in load_articles():
        raw = (ARTICLES_DIR / f"{article.id}.txt").read_bytes().decode("utf-8")
        first, blank, *rest = raw.split("\n")
        assert first.strip() and blank == "", article.id
        assert article.body and "\n\n\n" not in raw, article.id
        assert raw.endswith("\n") and not raw.endswith("\n\n"), article.id


def test_every_event_is_described_and_has_at_least_two_articles() -> None:
    events = load_events()
    sizes = Counter(article.event for article in load_articles() if article.event)
    assert set(sizes) == set(events)
    assert {event: n for event, n in sizes.items() if n < 2} == {}
    for event in events.values():
        assert event.description.strip(), event.id
        assert isinstance(event.date, dt.date), event.id


def test_an_event_is_either_all_positive_or_all_negative() -> None:
    kinds: dict[str, set[Kind]] = {}
    for article in load_articles():
        if article.event:
            kinds.setdefault(article.event, set()).add(article.kind)
    assert {event: k for event, k in kinds.items() if len(k) > 1} == {}
