"""Imported only by the extraction pool's forkserver: build the tagger there, once, before any worker forks.

Every worker is forked from the forkserver, so each starts with the tagger already loaded instead
of loading jieba's dictionary itself (about 1 s of CPU per worker, on the run's critical path).
The pool names the folders in the environment while it starts the forkserver (`pipeline.process.TAGGER_DIRS_ENV`).
A forkserver started earlier in the process, by another pool or another settings, is reused as it
is: `get_tagger` keys its cache on the watchlist's path and mtime, so a worker whose tagger differs
builds its own, as before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pipeline.config import Settings
from pipeline.process import TAGGER_DIRS_ENV
from pipeline.tag import get_tagger


def _preload() -> None:
    dirs = os.environ.pop(TAGGER_DIRS_ENV, None)
    if dirs is None:
        return
    config_dir, cache_dir = json.loads(dirs)
    try:
        get_tagger(Settings(config_dir=Path(config_dir), cache_dir=Path(cache_dir)))
    except Exception:  # each worker's own load meets the same error and reports it
        return


_preload()
