"""`newsmon label` and `newsmon evaluate` on the real node, with real labelled articles."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import Settings
from tests.corpus import Kind, index_articles, load_articles

runner = CliRunner()
RULE = "export_control_japan_china"
# One of each outcome under the shipped rule as it was before two lessons (_earlier_rules):
FLAGGED_RIGHTLY = "ja-entity-lists-livedoor-b"
FLAGGED_WRONGLY = "ja-eu-resourceeu-plan-sankei-kaikai"  # the EU's rare-earth stockpile "on the Japanese model"
MISSED = "ja-entity-lists-companies-puzzled-yomiuri-livedoor"  # its 軍民両用 was not yet a term


def newsmon(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.stdout if code == 0 else result.stderr


def _earlier_rules(config_dir: Path) -> None:
    """The shipped watchlist without japan_as_model and the ja alias 軍民両用: the real mistakes
    it made then (the corpus has none under the current one) are what evaluate must explain."""
    path = config_dir / "watchlist.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["terms"] = [t for t in raw["terms"] if t["id"] != "japan_as_model"]
    dual_use = next(e for e in raw["entities"] if e["id"] == "dual_use_items")
    dual_use["names"]["ja"].remove("軍民両用")
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")


def _evaluate() -> dict[str, Any]:
    return dict(json.loads(newsmon("evaluate", "--json")))


def test_labels_measure_the_rules_and_name_what_caused_each_miss(settings: Settings, env: Path) -> None:
    _earlier_rules(env)
    by_id = {a.id: a for a in load_articles()}
    unrelated = next(a for a in load_articles() if a.kind is Kind.UNRELATED)
    chosen = [by_id[FLAGGED_RIGHTLY], by_id[FLAGGED_WRONGLY], by_id[MISSED], unrelated]
    index_articles(settings, [(a, datetime.now(UTC)) for a in chosen])
    assert _evaluate()["labelled"] == 0

    for article in chosen:
        verdict = "relevant" if article.relevant else "irrelevant"
        assert "(stored)" in newsmon("label", article.url, verdict)
    # Labelling again changes nothing; changing one's mind is a change.
    assert "(unchanged)" in newsmon("label", by_id[MISSED].url, "relevant")
    assert "(changed)" in newsmon("label", unrelated.url, "relevant")
    assert "(changed)" in newsmon("label", unrelated.url, "irrelevant")

    # Indexing the articles again (a re-run, a re-fetch) keeps the verdicts.
    index_articles(settings, [(a, datetime.now(UTC)) for a in chosen])
    result = _evaluate()
    assert (result["labelled"], result["tp"], result["fp"], result["fn"], result["tn"]) == (4, 1, 1, 1, 1)
    assert result["precision"] == 0.5 and result["recall"] == 0.5
    misses = {m["url"]: m for m in result["misses"]}
    wrong = misses[by_id[FLAGGED_WRONGLY].url]
    assert wrong["mistake"] == "false positive"
    assert any(r.startswith(f"rule {RULE} matched:") and "japan" in r and "china" in r for r in wrong["reasons"])
    assert any(r.startswith("because: ") for r in wrong["reasons"])
    missed = misses[by_id[MISSED].url]
    assert missed["mistake"] == "false negative"
    assert any(r.startswith(f"rule {RULE} failed:") and "japan" in r for r in missed["reasons"]), missed

    # The verdicts survive a retag under an edited watchlist.
    watchlist = env / "watchlist.yaml"
    watchlist.write_text(watchlist.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    assert "4 of 4 documents retagged" in newsmon("retag")
    assert _evaluate()["labelled"] == 4
    shown = newsmon("evaluate")
    assert "4 labelled articles: precision 0.500, recall 0.500" in shown and "false negative" in shown


def test_labelling_an_unknown_url_names_it(env: Path) -> None:
    url = "https://example.org/never-indexed.html"
    error = newsmon("label", url, "relevant", code=1)
    assert url in error and "no indexed article" in error
    assert "irrelevant" in runner.invoke(app, ["label", url, "maybe"]).output
