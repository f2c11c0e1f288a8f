"""Real pages with hand-checked publication dates (tests/data/pages, origins in tests/data/README.md)."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.fetch import decode_html

PAGES = Path(__file__).parent / "data" / "pages"


@dataclass(frozen=True)
class DatedPage:
    name: str
    html: str
    url: str | None
    truth: str  # "YYYY-MM-DD", or "YYYY-MM-DD HH:MM" (local) where the page shows the time


def chinese_pages() -> list[DatedPage]:
    """61 Chinese news pages; times are Asia/Shanghai."""
    labels = yaml.safe_load((PAGES / "zh-dates" / "labels.yaml").read_text(encoding="utf-8"))
    return [DatedPage(name, _read(PAGES / "zh-dates" / f"{name}.gz"), None, truth) for name, truth in labels.items()]


def mediacloud_pages() -> list[DatedPage]:
    """htmldate's evaluation pages (news sites worldwide) whose ground truth gives a date."""
    labels = json.loads((PAGES / "htmldate-mediacloud" / "labels.json").read_text(encoding="utf-8"))
    return [
        DatedPage(name, _read(PAGES / "htmldate-mediacloud" / f"{name}.gz"), item["url"], item["date"])
        for name, item in labels.items()
        if item.get("date")
    ]


def _read(path: Path) -> str:
    return decode_html(gzip.decompress(path.read_bytes()), "")[0]
