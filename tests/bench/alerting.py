"""Section 4: alert latency, from a relevant entry appearing in a feed to the mail arriving.

A real `newsmon run --once` subprocess does the work against the bench's node, a
loopback feed host and an aiosmtpd server; a warm-up run first makes it a steady-state
run (indices exist, the feed is known and its old entry processed).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.config import PROJECT_ROOT
from tests.bench.feedhost import FeedHost
from tests.bench.figures import Row, Section, fmt
from tests.pages import EXPORT_CONTROL_PARAGRAPHS, UNRELATED_PARAGRAPHS, article_html, rss, write_feeds
from tests.servers import SmtpServer, _Collect
from tests.test_alerts import write_rules

TARGET_S = 30.0
RUN_TIMEOUT_S = 300
_STAGE_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ newsmon\.stages stage=(\w+)", re.M)


class _TimedCollect(_Collect):
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        if answer.startswith("250"):
            self.owner.arrivals.append(time.monotonic())  # type: ignore[attr-defined]
        return answer


class TimedSmtpServer(SmtpServer):
    """SmtpServer that also notes when (time.monotonic) each accepted message arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self._controller = Controller(_TimedCollect(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()


@dataclass
class RunResult:
    code: int
    wall: float
    stages: dict[str, float]  # stage → seconds after the run started, from its log lines
    output: str
    timed_out: bool = False  # stopped, with its process group, at the time limit


def newsmon_command() -> list[str]:
    script = Path(sys.executable).parent / "newsmon"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pipeline"]


def run_once(env: dict[str, str], timeout: float = RUN_TIMEOUT_S) -> RunResult:
    """`newsmon run --once`; one still running after `timeout` is killed with its workers and reported so."""
    started_wall, started = time.time(), time.perf_counter()
    # Its own session, so a timeout stops the forkserver and workers too, not only the CLI.
    proc = subprocess.Popen(
        [*newsmon_command(), "run", "--once"],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    stages = {}
    for stamp, stage in _STAGE_LINE.findall(stderr):
        # asctime is local time with milliseconds; so is time.time() read as local.
        at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        stages[stage] = at - started_wall
    return RunResult(proc.returncode, wall, stages, stdout + stderr, timed_out)


def run_env(config_dir: Path, var_dir: Path, cache_dir: Path, es_url: str, smtp_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSMON_")}
    env.update(
        {
            "NEWSMON_ES_URL": es_url,
            "NEWSMON_INDEX_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
            "NEWSMON_CONFIG_DIR": str(config_dir),
            "NEWSMON_VAR_DIR": str(var_dir),
            "NEWSMON_CACHE_DIR": str(cache_dir),
            "NEWSMON_FETCH_ALLOW_PRIVATE_HOSTS": "true",
            "NEWSMON_SMTP_HOST": "127.0.0.1",
            "NEWSMON_SMTP_PORT": str(smtp_port),
            "NEWSMON_SMTP_FROM": "newsmon@example.org",
            # Each run its own pool, as these figures were first measured; none is left behind either.
            "NEWSMON_POOL_KEEP_WARM_SECONDS": "0",
        }
    )
    return env


def set_up(env: dict[str, str]) -> str | None:
    """`newsmon setup --no-seeds`, the operator's first step: None, or why it failed."""
    done = subprocess.run(
        [*newsmon_command(), "setup", "--no-seeds"], env=env, capture_output=True, text=True, check=False
    )
    return f"newsmon setup exited {done.returncode}: {done.stderr[-400:]}" if done.returncode else None


def measure(es_url: str, work_dir: Path, cache_dir: Path) -> Section:
    section = Section("alert latency")
    config_dir = work_dir / "alert-config"
    shutil.copytree(PROJECT_ROOT / "config", config_dir)
    write_rules(config_dir)
    smtp = TimedSmtpServer()
    smtp.start()
    try:
        with FeedHost() as host:
            old = host.add("/news/cold-wave.html", article_html("寒潮来袭", UNRELATED_PARAGRAPHS))
            old_item = {"title": "寒潮来袭", "link": old}
            host.add("/feed.xml", rss("local", [old_item]), "application/rss+xml")
            write_feeds(config_dir, [("local", host.url("/feed.xml"), "zh-Hans")])
            env = run_env(config_dir, work_dir / "alert-var", cache_dir, es_url, smtp.port)
            section.error = set_up(env)
            if section.error:
                return section
            warm = run_once(env)
            if warm.code != 0:
                section.error = f"warm-up run exited {warm.code}: {warm.output[-400:]}"
                return section
            title = "中方对日实施两用物项出口管制"
            new = host.add("/news/export-control.html", article_html(title, EXPORT_CONTROL_PARAGRAPHS))
            host.add("/feed.xml", rss("local", [{"title": title, "link": new}, old_item]), "application/rss+xml")
            added = time.monotonic()  # the entry is in the feed from here on
            run = run_once(env)
    finally:
        smtp.stop()
    latency = smtp.arrivals[0] - added if smtp.arrivals else None
    section.data = {
        "alert_latency_seconds": latency,
        "alert_run_seconds": run.wall,
        "alert_run_exit_code": run.code,
        "alert_messages": len(smtp.arrivals),
        "alert_warmup_run_seconds": warm.wall,
        "alert_run_stage_offsets_seconds": run.stages,
        "alert_warmup_stage_offsets_seconds": warm.stages,
    }
    stages = ", ".join(f"{k} +{v:.1f}" for k, v in run.stages.items() if k != "tag") or "no stage lines"
    section.rows = [
        Row(
            "alert latency: entry in feed → mail received (s)",
            fmt(latency, 2),
            f"its `newsmon run --once`: {fmt(run.wall, 1)} s, stages done at {stages}",
            f"≤ {TARGET_S:.0f} s",
            latency is not None and latency <= TARGET_S and len(smtp.arrivals) == 1,
        ),
    ]
    if latency is None:
        section.error = f"no mail arrived; run exited {run.code}: {run.output[-400:]}"
    return section
