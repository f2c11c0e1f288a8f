"""What a section reports: rows of the table, and figures for the JSON file."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table


@dataclass(frozen=True)
class Row:
    """One line of the printed table: figure | value | comparison | target | met?"""

    figure: str
    value: str
    comparison: str = ""
    target: str = ""
    met: bool | None = None  # None: no target


@dataclass
class Section:
    """A section's rows, its JSON figures, and an error if it could not finish."""

    name: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def table(sections: list[Section], title: str) -> Table:
    out = Table(title=title, show_lines=False)
    for column in ("figure", "value", "comparison", "target", "met?"):
        out.add_column(column, overflow="fold")
    for section in sections:
        out.add_section()
        if section.error:
            out.add_row(f"[bold]{section.name}[/bold]", "[red]error[/red]", section.error, "", "[red]no[/red]")
        for row in section.rows:
            met = "" if row.met is None else ("[green]yes[/green]" if row.met else "[red]no[/red]")
            out.add_row(row.figure, row.value, row.comparison, row.target, met)
    return out


def write_json(path: Path, sections: list[Section], extra: dict[str, Any], *, merge: bool = False) -> None:
    """Write the figures; with `merge` (a run of some sections), the other sections' keys stay as they were."""
    old: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if merge and path.is_file() else {}
    ran = {r.figure for s in sections for r in s.rows}
    figures: dict[str, Any] = old | dict(extra)
    figures["errors"] = {k: v for k, v in old.get("errors", {}).items() if k not in {s.name for s in sections}}
    for section in sections:
        figures.update(section.data)
        if section.error:
            figures["errors"][section.name] = section.error
    if not figures["errors"]:
        del figures["errors"]
    missed = [f for f in old.get("targets_missed", []) if f not in ran]
    figures["targets_missed"] = missed + [r.figure for s in sections for r in s.rows if r.met is False]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
