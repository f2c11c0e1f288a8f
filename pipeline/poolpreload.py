"""Imported only by the extraction pool's forkserver: build there, once, what every worker would build itself.

Every worker is forked from the forkserver, so each starts with these loaded:
- the tagger, instead of loading jieba's dictionary itself (about 1 s of CPU per worker, on the
  run's critical path);
- dateparser's tables for every locale, which htmldate's extensive search (pagedate, on pages
  without a date of their own) builds at its first such page: 1.4 s of CPU per worker, inside
  that page's time limit.
The pool names the folders in the environment while it starts the forkserver
(`pipeline.poolserver`). A forkserver started earlier in the process, by another pool
or other settings, is reused as it is: `get_tagger` keys its cache on the watchlist's path and
mtime, so a worker whose tagger differs builds its own, as before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from htmldate.extractors import get_external_parser

from pipeline.config import Settings
from pipeline.poolserver import TAGGER_DIRS_ENV
from pipeline.tag import get_tagger


def _preload() -> None:
    dirs = os.environ.pop(TAGGER_DIRS_ENV, None)
    if dirs is None:
        return
    # A text no locale reads as a date: dateparser tries, and so builds, every locale's tables.
    get_external_parser().get_date_data("no date here")
    config_dir, cache_dir = json.loads(dirs)
    try:
        get_tagger(Settings(config_dir=Path(config_dir), cache_dir=Path(cache_dir)))
    except Exception:  # each worker's own load meets the same error and reports it
        return


_preload()
