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

from pipeline.config import Settings

TAGGER_DIRS_ENV = "_NEWSMON_POOL_TAGGER_DIRS"  # read by pipeline.poolpreload in the forkserver; not a setting
PRELOAD = ["pipeline.process", "pipeline.poolpreload"]


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


@contextlib.contextmanager
def _tagger_dirs_in_env(settings: Settings) -> Iterator[None]:
    """The folders the forkserver builds its tagger from, in the environment it starts with."""
    os.environ[TAGGER_DIRS_ENV] = json.dumps([str(settings.config_dir), str(settings.cache_dir)])
    try:
        yield
    finally:
        os.environ.pop(TAGGER_DIRS_ENV, None)
