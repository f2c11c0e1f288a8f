"""The extraction pool's forkserver: one per process, started as early as a run knows its settings.

Every worker forks from it. It imports the pipeline and builds what each worker would otherwise build
itself (pipeline.poolpreload) while the starting process is still importing and polling: starting it
costs the caller a fork and an exec, and imports nothing heavy here, so `newsmon run --once` starts it
before its own imports of the run's stages.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import os
from collections.abc import Iterator

import psutil

from pipeline.config import Settings
from pipeline.warmpool import launch

TAGGER_DIRS_ENV = "_NEWSMON_POOL_TAGGER_DIRS"  # read by pipeline.poolpreload in the forkserver; not a setting
PRELOAD = ["pipeline.process", "pipeline.extract", "pipeline.poolpreload"]


def forkserver(settings: Settings) -> multiprocessing.context.ForkServerContext:
    """The forkserver context, its server started (and preloading for `settings`) if it was not yet.

    A server already running, started for other settings, is kept: workers whose tagger differs
    build their own (`pipeline.poolpreload`).
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    with _tagger_dirs_in_env(settings):
        multiprocessing.forkserver.ensure_running()
    return context


class EarlyForkserver:
    """The forkserver (or, with a warm pool, the warm service) started before the caller knows whether
    there is work. Unless the caller marks
    it `used`, it is ended with the caller when the caller started it: a run that found nothing to
    build does not leave it finishing its preload (seconds of CPU) after the run has gone, holding
    the run's output pipes open. A used one stays for later pools of the process, as before."""

    def __init__(self, settings: Settings) -> None:
        self.used = False
        self._started: set[psutil.Process] = set()
        if settings.pool_keep_warm_seconds > 0:
            launch(settings)  # the run builds on the warm service: start that (if none listens) instead
            return
        before = _forkserver_pid()
        forkserver(settings)
        if (pid := _forkserver_pid()) is not None and pid != before:
            with contextlib.suppress(psutil.NoSuchProcess):
                self._started = {psutil.Process(pid)}

    def __enter__(self) -> EarlyForkserver:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.used:
            return
        # A later pool in this process starts a new one (ensure_running notices this one has ended).
        for server in self._started:
            with contextlib.suppress(psutil.NoSuchProcess):
                server.kill()


def _forkserver_pid() -> int | None:
    """The running forkserver's pid, which the standard library keeps only privately. Its command
    line does not name it until it has exec'ed, so a look at the children can miss a new one."""
    pid = getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)
    return pid if isinstance(pid, int) else None


@contextlib.contextmanager
def _tagger_dirs_in_env(settings: Settings) -> Iterator[None]:
    """The folders the forkserver builds its tagger from, in the environment it starts with."""
    os.environ[TAGGER_DIRS_ENV] = json.dumps([str(settings.config_dir), str(settings.cache_dir)])
    try:
        yield
    finally:
        os.environ.pop(TAGGER_DIRS_ENV, None)
