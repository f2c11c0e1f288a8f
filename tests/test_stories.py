"""Stories on real labelled articles (tests/data/articles): one event across scripts, events apart."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, time
from pathlib import Path

import pytest

from pipeline.stories import EntityWeights, Fingerprint, NewArticle, assign_batch, story_marks
from pipeline.tag import Tagger
from pipeline.text import normalise
from pipeline.watchlist import load_watchlist
from tests.conftest import CONFIG_DIR
from tests.corpus import CorpusArticle, load_articles

# Three events on one topic that must stay three stories.
DUAL_USE_BAN = "cn-dual-use-ban-japan-2026-01"
ENTITY_LISTS = "cn-entity-lists-japan-2026-02-24"
CHIP_CONTROLS = "jp-chip-equipment-controls-promulgated-2023-05-23"


@pytest.fixture(scope="module")
def grouped(cache_dir: Path) -> list[tuple[CorpusArticle, str]]:
    """Every corpus article with the story the shipped rule gives it, grouped as one index would."""
    tagger = Tagger(load_watchlist(CONFIG_DIR / "watchlist.yaml"), CONFIG_DIR, cache_dir)
    articles = load_articles()
    new = []
    for article in articles:
        tags = tagger.tag(article.title, article.body)
        published = datetime.combine(article.published, time(), tzinfo=UTC)
        new.append(NewArticle(article.id, published, Fingerprint(tags.mentions, frozenset(tags.story_marks))))
    assigned = assign_batch(new, [], EntityWeights.of(a.fingerprint for a in new))
    return [(a, assigned[a.id].story_id) for a in articles]


def test_numbers_and_days_read_alike_in_every_script() -> None:
    hant = story_marks(normalise("商務部1月6日公告，禁止１００５項兩用物項出口"))
    ja = story_marks(normalise("商務省は6日、1005品目の輸出を禁止すると発表した"))
    en = story_marks(normalise("On January 6 MOFCOM banned exports of 1,005 dual-use items"))
    assert {"n:1005", "day:6"} <= set(hant) & set(ja) & set(en)
    assert "n:2026" not in story_marks(normalise("2026年")), "a year names no event"


def test_one_event_in_four_languages_is_mostly_one_story(grouped: list[tuple[CorpusArticle, str]]) -> None:
    for event, languages in ((DUAL_USE_BAN, 4), (ENTITY_LISTS, 3)):
        members = [(a, s) for a, s in grouped if a.event == event]
        biggest = max({s for _, s in members}, key=lambda s: sum(1 for _, m in members if m == s))
        in_biggest = [a for a, s in members if s == biggest]
        assert len(in_biggest) >= 0.7 * len(members), event
        assert len({a.language for a in in_biggest}) >= languages, event


def test_different_events_on_one_topic_stay_apart(grouped: list[tuple[CorpusArticle, str]]) -> None:
    stories_of: dict[str, set[str]] = defaultdict(set)
    for article, story in grouped:
        if article.event in (DUAL_USE_BAN, ENTITY_LISTS, CHIP_CONTROLS):
            stories_of[article.event].add(story)
    assert not stories_of[DUAL_USE_BAN] & stories_of[ENTITY_LISTS]
    assert not stories_of[DUAL_USE_BAN] & stories_of[CHIP_CONTROLS]
    assert not stories_of[ENTITY_LISTS] & stories_of[CHIP_CONTROLS]


def test_the_same_text_in_two_scripts_is_one_story(grouped: list[tuple[CorpusArticle, str]]) -> None:
    story = {a.id: s for a, s in grouped}
    assert story["zh-hans-eu-resourceeu-plan-seccw"] == story["zh-hant-eu-resourceeu-plan-zeenzj"]
