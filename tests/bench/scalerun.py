"""`newsmon run --once` for 20 new articles against a filled index (issue 18, item 2).

The articles are served from 4 loopback feeds and mailed to a loopback aiosmtpd under the
shipped alert rules. A warm-up run first polls the feeds while they are empty, so the
measured run is a steady-state one: feeds known, indices warm, only the new work to do.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import PROJECT_ROOT
from tests.bench import corpus
from tests.bench.alerting import RUN_TIMEOUT_S, RunResult, run_env, run_once
from tests.bench.feedhost import FeedHost
from tests.pages import rss, write_feeds
from tests.servers import SmtpServer

NEW_ARTICLES = 20
FEEDS = 4
# The pool's log line when it kills and restarts its workers (a page past its deadline, or a crash).
WORKERS_REPLACED = "replacing extraction workers"


@dataclass(frozen=True)
class SizedRun:
    seconds: float
    warmup_seconds: float
    alert_seconds: float | None  # from the run's stage lines: index done → alert done
    stages: dict[str, float]
    emails: int
    timed_out: bool  # the measured run was stopped at the limit: `seconds` is a lower bound
    workers_replaced: int  # pool restarts in the measured run


def _checked(run: RunResult, what: str) -> RunResult:
    if run.code != 0 and not run.timed_out:
        raise RuntimeError(f"{what} exited {run.code}: {run.output[-400:]}")
    return run


def measure(es_url: str, prefix: str, work: Path, cache_dir: Path, timeout: float = RUN_TIMEOUT_S) -> SizedRun:
    """Warm-up run on empty feeds, then the timed run that takes the 20 new articles.

    A run still going after `timeout` seconds is stopped and reported as timed out, not waited for.

    Raises:
        RuntimeError: a run failed (its output's tail is in the message), or the warm-up timed out.
    """
    config_dir = work / f"{prefix}-config"
    shutil.copytree(PROJECT_ROOT / "config", config_dir, dirs_exist_ok=True)
    smtp = SmtpServer()
    smtp.start()
    try:
        with FeedHost() as host:
            paths = [f"/feeds/{n}.xml" for n in range(FEEDS)]
            for path in paths:
                host.add(path, rss("scale", []), "application/rss+xml")
            write_feeds(config_dir, [(f"scale-{n}", host.url(p), "zh-Hans") for n, p in enumerate(paths)])
            env = run_env(config_dir, work / f"{prefix}-var", cache_dir, es_url, smtp.port)
            env |= {"NEWSMON_INDEX_PREFIX": prefix, "NEWSMON_FETCH_PER_HOST_CONCURRENCY": "8"}
            warm = _checked(run_once(env, timeout), "warm-up run")
            if warm.timed_out:
                raise RuntimeError(f"warm-up run on empty feeds outlived {timeout:.0f} s: {warm.output[-400:]}")
            items: list[list[dict[str, str]]] = [[] for _ in range(FEEDS)]
            for i, article in enumerate(corpus.generated_articles(NEW_ARTICLES)):
                link = host.add(f"/news/{i}.html", article.html)
                items[i % FEEDS].append({"title": article.title, "link": link, "summary": article.summary})
            for path, entries in zip(paths, items, strict=True):
                host.add(path, rss("scale", entries), "application/rss+xml")
            run = _checked(run_once(env, timeout), "run at size")
    finally:
        smtp.stop()
    alert = run.stages["alert"] - run.stages["index"] if {"alert", "index"} <= run.stages.keys() else None
    return SizedRun(
        run.wall, warm.wall, alert, run.stages, len(smtp.messages), run.timed_out, run.output.count(WORKERS_REPLACED)
    )
