"""The labelled corpus of real articles is well-formed: what the relevance and story benchmarks rely on."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections import Counter
from pathlib import Path

import opencc
import pytest
import yaml

from pipeline.stories import WINDOW
from tests.corpus import (
    ARTICLES_DIR,
    FRESH_DIR,
    LANGUAGES,
    STORY_BLOCK_GAP,
    Kind,
    load_articles,
    load_events,
    story_blocks,
    story_held_out,
)

ID_SHAPE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
# The events the issues name (15, 16): each must be reported in several languages.
MAIN_EVENTS = (
    "cn-dual-use-ban-japan-2026-01",
    "cn-entity-lists-japan-2026-02-24",
    "jp-chip-equipment-controls-promulgated-2023-05-23",
)

# The labelled corpus and its fresh story part: both kept to the same rules.
PARTS = pytest.mark.parametrize("folder", [ARTICLES_DIR, FRESH_DIR], ids=["corpus", "fresh"])


@PARTS
def test_every_label_has_its_article_file_and_every_file_a_label(folder: Path) -> None:
    labelled = {article.id for article in load_articles(folder)}
    on_disk = {path.stem for path in folder.glob("*.txt")}
    assert labelled == on_disk


@PARTS
def test_ids_are_unique_kebab_case_and_urls_unique(folder: Path) -> None:
    raw = yaml.safe_load((folder / "labels.yaml").read_text(encoding="utf-8"))["articles"]
    ids = [entry["id"] for entry in raw]
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    assert [i for i in ids if not ID_SHAPE.match(i)] == []
    urls = [entry["url"] for entry in raw]
    assert [u for u, n in Counter(urls).items() if n > 1] == []
    assert all(u.startswith(("http://", "https://")) for u in urls)


@PARTS
def test_labels_use_known_languages_kinds_and_dates(folder: Path) -> None:
    for article in load_articles(folder):
        assert article.language in LANGUAGES, article.id
        assert isinstance(article.published, dt.date), article.id
        assert not isinstance(article.published, dt.datetime), article.id
        assert article.relevant == (article.kind is Kind.POSITIVE), article.id
        assert (article.event is None) == (article.kind is Kind.UNRELATED), article.id
        assert article.outlet.strip(), article.id


@PARTS
def test_article_files_are_a_title_line_a_blank_line_and_a_body(folder: Path) -> None:
    for article in load_articles(folder):
        raw = (folder / f"{article.id}.txt").read_bytes().decode("utf-8")
        first, blank = raw.split("\n", 2)[:2]
        assert first.strip() and blank == "", article.id
        assert article.body and "\n\n\n" not in raw, article.id
        assert raw.endswith("\n") and not raw.endswith("\n\n"), article.id


@PARTS
def test_every_event_is_described_and_has_at_least_two_articles(folder: Path) -> None:
    described = load_events(folder)
    sizes = Counter(article.event for article in load_articles(folder) if article.event)
    assert set(sizes) == set(described)
    assert {event: n for event, n in sizes.items() if n < 2} == {}
    for event in described.values():
        assert event.description.strip(), event.id
        assert isinstance(event.date, dt.date), event.id


@PARTS
def test_an_event_is_either_all_positive_or_all_negative(folder: Path) -> None:
    kinds: dict[str, set[Kind]] = {}
    for article in load_articles(folder):
        if article.event:
            kinds.setdefault(article.event, set()).add(article.kind)
    assert {event: k for event, k in kinds.items() if len(k) > 1} == {}


def test_the_corpus_is_large_enough_for_the_benchmarks_in_every_language() -> None:
    articles = load_articles()
    kinds = Counter(article.kind for article in articles)
    languages = Counter(article.language for article in articles)
    assert len(articles) >= 100
    assert kinds[Kind.POSITIVE] >= 40 and kinds[Kind.HARD_NEGATIVE] >= 35 and kinds[Kind.UNRELATED] >= 15
    assert {language: n for language, n in languages.items() if n < 15} == {}
    assert set(languages) == set(LANGUAGES)


def test_the_main_events_are_reported_in_at_least_three_languages() -> None:
    languages: dict[str, set[str]] = {}
    for article in load_articles():
        if article.event:
            languages.setdefault(article.event, set()).add(article.language)
    for event in MAIN_EVENTS:
        assert len(languages[event]) >= 3, (event, languages[event])


@PARTS
def test_chinese_articles_are_labelled_with_the_script_they_are_written_in(folder: Path) -> None:
    # A simplified text changes under s2t and barely under t2s; a traditional one the reverse.
    to_traditional, to_simplified = opencc.OpenCC("s2t"), opencc.OpenCC("t2s")
    for article in load_articles(folder):
        if not article.language.startswith("zh"):
            continue
        text = article.text
        changed_by_s2t = sum(a != b for a, b in zip(text, to_traditional.convert(text), strict=True))
        changed_by_t2s = sum(a != b for a, b in zip(text, to_simplified.convert(text), strict=True))
        written_in = "zh-Hans" if changed_by_s2t > changed_by_t2s else "zh-Hant"
        assert written_in == article.language, article.id


def test_the_story_split_keeps_every_story_on_one_side() -> None:
    """Held-out articles are whole blocks, later than every tuning article by more than a story
    window: no story can hold articles of both parts, so each part's pairs are its own."""
    assert WINDOW < STORY_BLOCK_GAP
    held = story_held_out()
    tuning = [a for a in load_articles() if a.id not in held]
    assert 0 < len(held) <= len(load_articles()) // 4
    for block in story_blocks():
        assert len({a.id in held for a in block}) == 1
    first_held = min(a.published for a in load_articles() if a.id in held)
    assert max(a.published for a in tuning) + STORY_BLOCK_GAP <= first_held


def test_the_fresh_part_is_new_material_with_events_in_several_languages() -> None:
    """Issue 16's fresh held-out set: no article, URL or event of the corpus it tests the rule
    chosen on, several events in three or more languages, and different events days apart."""
    fresh = load_articles(FRESH_DIR)
    corpus = load_articles()
    assert len(fresh) >= 40
    assert {a.id for a in fresh}.isdisjoint(a.id for a in corpus)
    assert {a.url for a in fresh}.isdisjoint(a.url for a in corpus)
    assert set(load_events(FRESH_DIR)).isdisjoint(load_events())
    assert len({a.language for a in fresh}) >= 3
    languages: dict[str, set[str]] = {}
    for article in fresh:
        if article.event:
            languages.setdefault(article.event, set()).add(article.language)
    assert sum(len(spoken) >= 3 for spoken in languages.values()) >= 2
    dates = sorted(event.date for event in load_events(FRESH_DIR).values())
    assert any(later - earlier < WINDOW for earlier, later in itertools.pairwise(dates))
