"""Salience conditions `within: N` (characters) and `in: lead`, on real article text."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.tag import Tagger
from pipeline.watchlist import load_watchlist
from tests.conftest import CONFIG_DIR
from tests.corpus import CorpusArticle, load_articles


@pytest.fixture(scope="module")
def shipped(cache_dir: Path) -> Tagger:
    return Tagger(load_watchlist(CONFIG_DIR / "watchlist.yaml"), CONFIG_DIR, cache_dir)


def _tagger(
    shipped: Tagger, tmp_path: Path, japan_condition: dict[str, Any] | None, term_condition: Any = None
) -> Tagger:
    """The shipped entities with one test rule (an export-control term, Japan, China), loaded from YAML."""
    raw = yaml.safe_load((CONFIG_DIR / "watchlist.yaml").read_text(encoding="utf-8"))
    term: dict[str, Any] = {"name": "term", "groups": ["export_control"]}
    japan: dict[str, Any] = {"name": "japan", "groups": ["japan"]}
    if term_condition:
        term["any"] = [term_condition]
    if japan_condition:
        japan["any"] = [japan_condition]
    raw["rules"] = [{"id": "test_rule", "all": [term, japan, {"name": "china", "groups": ["china"]}]}]
    path = tmp_path / "watchlist.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    # Same entries, other rules: reuse the loaded tagger (its automaton and jieba) with the new rules.
    tagger = copy.copy(shipped)
    tagger.watchlist = load_watchlist(path)
    return tagger


def _article(stem: str) -> CorpusArticle:
    return next(a for a in load_articles() if a.id == stem)


def test_within_n_characters_counts_the_characters_between_the_two_mentions(tmp_path: Path, shipped: Tagger) -> None:
    # 中国商務省は、日本の20の企業などについて輸出規制対象に指定しました。(TBS via livedoor)
    title = _article("ja-entity-lists-livedoor-b").title
    gap = title.index("輸出規制") - (title.index("日本") + len("日本"))
    assert gap == len("の20の企業などについて")
    near = _tagger(shipped, tmp_path, {"near": "term", "within": gap})
    assert near.tag(title, "").relevance.relevant
    assert near.tag(title, "").relevance.evidence == [title]
    too_far = _tagger(shipped, tmp_path, {"near": "term", "within": gap - 1})
    assert not too_far.tag(title, "").relevance.relevant


@pytest.mark.parametrize("where", ["lead", "title"])
def test_in_lead_or_title_needs_the_term_there(tmp_path: Path, shipped: Tagger, where: str) -> None:
    article = _article("en-entity-lists-newsonjapan")
    paragraphs = article.body.split("\n\n")
    naming = next(p for p in paragraphs if "export control" in p and "Japan" in p and "China" in p)
    silent = next(p for p in paragraphs if "export" not in p.lower())
    tagger = _tagger(shipped, tmp_path, None, {"in": where})
    if where == "lead":
        # The same two real paragraphs, in either order, under a title that names nothing.
        assert tagger.tag("News On Japan", f"{naming}\n\n{silent}").relevance.relevant
        assert not tagger.tag("News On Japan", f"{silent}\n\n{naming}").relevance.relevant
    else:
        assert tagger.tag(article.title, f"{silent}\n\n{naming}").relevance.relevant
        assert not tagger.tag("News On Japan", f"{silent}\n\n{naming}").relevance.relevant


def test_japan_named_as_the_model_of_another_plan_is_no_actor(shipped: Tagger) -> None:
    # The EU's rare-earth stockpile "on the Japanese model" (日本モデル, 日本をモデルに): Japan is
    # named four times, but twice only as the example the EU follows.
    article = _article("ja-eu-resourceeu-plan-sankei-kaikai")
    tags = shipped.tag(article.title, article.body)
    assert tags.mentions["japan_as_model"] == 2
    assert tags.mentions["japan"] == 2
    assert not tags.relevance.relevant
    # The same text with Japan as the actor in the title is another story, and relevant.
    acting = article.title.replace("EUが日本モデルに", "日本が")
    assert shipped.tag(acting, article.body).relevance.relevant


def test_japanese_dual_use_written_without_items_is_the_export_control_term(shipped: Tagger) -> None:
    # Yomiuri: 「懸念リスト」の対象となった日本の企業・大学に軍民両用品を輸出する場合 …
    article = _article("ja-entity-lists-companies-puzzled-yomiuri-livedoor")
    tags = shipped.tag(article.title, article.body)
    assert tags.mentions["dual_use_items"] >= 4
    assert tags.relevance.relevant
