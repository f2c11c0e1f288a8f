"""The labelled corpus of real articles is well-formed: what the relevance and story benchmarks rely on."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

import opencc
import yaml

from pipeline.stories import WINDOW
from tests.corpus import (
    ARTICLES_DIR,
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
        first, blank = raw.split("\n", 2)[:2]
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


def test_chinese_articles_are_labelled_with_the_script_they_are_written_in() -> None:
    # A simplified text changes under s2t and barely under t2s; a traditional one the reverse.
    to_traditional, to_simplified = opencc.OpenCC("s2t"), opencc.OpenCC("t2s")
    for article in load_articles():
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
