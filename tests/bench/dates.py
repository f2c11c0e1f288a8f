"""Section: publication dates on real pages, ours beside bare htmldate and trafilatura's date.

Same-day rate on two sets with ground truth (61 hand-labelled Chinese pages, 83 of
htmldate's own Media Cloud evaluation pages that have a date), and the time-right rate
on the Chinese pages whose date line shows a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import htmldate
import trafilatura
from htmldate import find_date
from trafilatura.utils import load_html

from pipeline.pagedate import page_date
from tests.bench.figures import Row, Section, fmt
from tests.datepages import DatedPage, chinese_pages, mediacloud_pages

NOW = datetime.now(UTC)
Dater = Callable[[DatedPage], str]  # "YYYY-MM-DD HH:MM" in the page's local time, "" for none


def ours(page: DatedPage) -> str:
    found = page_date(load_html(page.html), page.url, None, NOW)
    if not found:
        return ""
    return found.value.strftime("%Y-%m-%d %H:%M" if found.has_time else "%Y-%m-%d")


def bare_htmldate(page: DatedPage) -> str:
    fmt_ = "%Y-%m-%d %H:%M"
    return (
        find_date(load_html(page.html), url=page.url, extensive_search=True, original_date=True, outputformat=fmt_)
        or ""
    )


def trafilatura_date(page: DatedPage) -> str:
    meta = trafilatura.extract_metadata(page.html, default_url=page.url)
    return (meta.date or "") if meta else ""


def rates(dater: Dater, pages: list[DatedPage]) -> tuple[float, float, float]:
    """(same-day rate, time-right rate where the truth has a time, CPU seconds)."""
    started = time.process_time()
    answers = [dater(p) for p in pages]
    cpu = time.process_time() - started
    day = sum(a[:10] == p.truth[:10] for a, p in zip(answers, pages, strict=True)) / len(pages)
    timed = [(a, p) for a, p in zip(answers, pages, strict=True) if len(p.truth) > 10]
    right = sum(a[:16] == p.truth for a, p in timed) / len(timed) if timed else float("nan")
    return day, right, cpu


def measure() -> Section:
    section = Section("dates")
    sets = {"zh": chinese_pages(), "mediacloud": mediacloud_pages()}
    daters: dict[str, Dater] = {"ours": ours, "htmldate": bare_htmldate, "trafilatura": trafilatura_date}
    for name, pages in sets.items():
        got = {who: rates(dater, pages) for who, dater in daters.items()}
        for who, (day, right, cpu) in got.items():
            section.data[f"dates_{name}_same_day_{who}"] = day
            section.data[f"dates_{name}_cpu_ms_per_page_{who}"] = 1000 * cpu / len(pages)
            if name == "zh":
                section.data[f"dates_{name}_time_right_{who}"] = right
        (day, right, cpu), (hday, hright, hcpu), (tday, _, _) = got["ours"], got["htmldate"], got["trafilatura"]
        section.rows.append(
            Row(
                f"publication day right, {len(pages)} {name} pages",
                f"{fmt(100 * day, 1)} %",
                f"bare htmldate {htmldate.__version__}: {fmt(100 * hday, 1)} %, trafilatura: {fmt(100 * tday, 1)} %",
                "≥ htmldate",
                day >= hday,
            )
        )
        if name == "zh":
            section.rows.append(
                Row(
                    "  time right where the page shows one",
                    f"{fmt(100 * right, 1)} %",
                    f"bare htmldate: {fmt(100 * hright, 1)} %",
                )
            )
        section.rows.append(
            Row(
                "  CPU ms per page",
                fmt(1000 * cpu / len(pages), 1),
                f"bare htmldate (extensive): {fmt(1000 * hcpu / len(pages), 1)}",
            )
        )
    section.data["htmldate_version"] = htmldate.__version__
    return section
