"""Counts for the fault suite's one-line summary (printed at the end of the test run)."""

from __future__ import annotations

from collections import Counter

totals: Counter[str] = Counter(tried=0, crashes=0, lost=0, doubled=0)


def record(*, tried: int = 0, crashes: int = 0, lost: int = 0, doubled: int = 0) -> None:
    totals.update(tried=tried, crashes=crashes, lost=lost, doubled=doubled)


def summary() -> str:
    return (
        f"hostile inputs tried: {totals['tried']}, crashes: {totals['crashes']}, "
        f"documents lost: {totals['lost']}, documents doubled: {totals['doubled']}"
    )
