"""The fault suite's tally, filled from what each hostile input actually did.

A trial is counted as tried when it starts. An exception from the code under test
(anything but a failed assertion or a refusal the test expects), or a run that
exits non-zero, is counted as a crash and named in the summary. Lost and doubled
documents are counted from the index before any assertion looks at them. So the
summary stays true when a test fails: one crash shows as "crashes: 1 (name: error)",
not only as a pytest error further up.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from elasticsearch import Elasticsearch
from typer.testing import CliRunner

from pipeline.es import Indices


class Crashed(Exception):
    """The code under test failed on a hostile input instead of handling it."""


@dataclass
class Tally:
    counts: Counter[str] = field(default_factory=lambda: Counter(tried=0, crashes=0, lost=0, doubled=0))
    crashed: list[str] = field(default_factory=list)  # "input: error", one per crash

    @contextmanager
    def trial(self, name: str, inputs: int = 1, refusals: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
        """Try `inputs` hostile inputs; an exception other than an assertion or a `refusal` is a crash."""
        self.counts["tried"] += inputs
        try:
            yield
        except AssertionError:
            raise
        except refusals:
            raise
        except Exception as exc:
            self.crash(name, f"{type(exc).__name__}: {exc}")
            raise

    def crash(self, name: str, error: str) -> None:
        self.counts["crashes"] += 1
        self.crashed.append(f"{name}: {' '.join(error.split())[:300]}")

    def account(self, expected: Iterable[str], found: list[str]) -> None:
        """Documents expected vs the ids found (one per document, repeats included)."""
        self.counts["lost"] += len(set(expected) - set(found))
        self.counts["doubled"] += len(found) - len(set(found))

    def summary(self) -> str:
        line = (
            f"hostile inputs tried: {self.counts['tried']}, crashes: {self.counts['crashes']}, "
            f"documents lost: {self.counts['lost']}, documents doubled: {self.counts['doubled']}"
        )
        return line + "".join(f"\n  crashed on {c}" for c in self.crashed)


tally = Tally()
trial = tally.trial
account = tally.account


def indexed_ids(es: Elasticsearch, indices: Indices) -> list[str]:
    """The id of every feed article in the index, repeats included (a document in two indices counts twice)."""
    es.indices.refresh(index=indices.articles)
    hits = es.search(index=indices.articles, size=1000, source=False, query={"term": {"source.kind": "feed"}})
    return [h["_id"] for h in hits["hits"]["hits"]]


def expected_ids(links: Iterable[str]) -> list[str]:
    """The article ids the pages at `links` must end up as."""
    from pipeline.models import article_id
    from pipeline.urls import canonical_url

    return [article_id(canonical_url(link)) for link in links]


def finished(run: subprocess.Popen[str], timeout: float = 300) -> str:
    """The output of a `newsmon` process on a hostile input; a non-zero exit raises Crashed."""
    output = run.communicate(timeout=timeout)[0]
    if run.returncode != 0:
        raise Crashed(f"{' '.join(map(str, run.args))} exited {run.returncode}: {output}")  # type: ignore[arg-type]
    return str(output)


def run_once() -> str:
    """`newsmon run --once` in-process on a hostile input; a failed run raises Crashed (counted by the trial)."""
    from pipeline.cli import app

    result = CliRunner().invoke(app, ["run", "--once"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise Crashed(f"newsmon run --once raised {type(result.exception).__name__}: {result.exception}")
    if result.exit_code != 0:
        raise Crashed(f"newsmon run --once exited {result.exit_code}: {result.output}")
    return result.output
