"""`newsmon watchlist suggest` on the real node, over real articles of MOFCOM's entity lists."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import Settings
from pipeline.watchlist import load_watchlist
from tests.corpus import index_articles, load_articles

runner = CliRunner()
# Four reports of the 24 February 2026 lists, in three scripts; one older report of Japan's chip rules.
RECENT = ("zh-hant-entity-lists-cnyes", "zh-hant-entity-lists-ettoday", "ja-entity-lists-livedoor-b")
RECENT += ("en-entity-lists-supplychainreport",)
OLD = "en-chip-controls-announced-britainherald"


def _suggest(*args: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, ["watchlist", "suggest", "--json", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_suggest_ranks_new_names_by_articles_with_an_example_and_a_yaml_entry(settings: Settings, env: Path) -> None:
    now = datetime.now(UTC)
    by_id = {a.id: a for a in load_articles()}
    index_articles(
        settings, [(by_id[i], now - timedelta(days=1)) for i in RECENT] + [(by_id[OLD], now - timedelta(days=90))]
    )

    found = _suggest("--limit", "200")
    names = [s["name"] for s in found]
    counts = [s["articles"] for s in found]
    assert counts == sorted(counts, reverse=True)
    # 三菱造船 is named by the Japanese report and the Taiwanese ones (merged across scripts).
    top = next(s for s in found if s["name"] in ("三菱造船", "三菱造船株式會社"))
    assert top["articles"] >= 2
    assert "Subaru Corporation" in names and "Kawasaki Heavy Industries" in names
    # The 90-day-old article's names (Nikon, Tokyo Electron) are outside the default 30 days.
    assert not {"Nikon Corp", "Tokyo Electron Ltd"} & set(names)
    assert "Tokyo Electron Ltd" in {s["name"] for s in _suggest("--since", "100d", "--limit", "200")}
    shown = runner.invoke(app, ["watchlist", "suggest"], catch_exceptions=False).stdout
    assert "Ready to paste into config/watchlist.yaml" in shown and "id: subaru_corporation" in shown
    subaru = next(s for s in found if s["name"] == "Subaru Corporation")
    assert "Subaru Corporation" in subaru["example"] and subaru["example_url"].startswith("http")

    # The YAML entry pastes into the watchlist as it is; the name is then known and no longer suggested.
    watchlist = env / "watchlist.yaml"
    text = watchlist.read_text(encoding="utf-8")
    watchlist.write_text(text.replace("entities:\n", "entities:\n" + subaru["yaml"] + "\n", 1), encoding="utf-8")
    entry = yaml.safe_load(subaru["yaml"])[0]
    assert entry["type"] == "organisation" and entry["names"] == {"en": ["Subaru Corporation"]}
    assert entry["id"] in load_watchlist(watchlist).by_id()
    assert "Subaru Corporation" not in {s["name"] for s in _suggest("--limit", "200")}


def test_suggest_names_a_bad_since(env: Path) -> None:
    result = runner.invoke(app, ["watchlist", "suggest", "--since", "a month"])
    assert result.exit_code == 1
    assert "--since" in result.stderr and "30d" in result.stderr
