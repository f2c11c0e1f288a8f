"""Logging set-up, and the one summary line each stage writes per run."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping

STAGE_LOG = logging.getLogger("newsmon.stages")


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Per-request lines from the HTTP and ES clients drown the stage lines.
    for noisy in ("httpx", "httpcore", "trafilatura", "htmldate", "courlan"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The ES client logs each retried connection error with a traceback; we report it once.
    logging.getLogger("elastic_transport").setLevel(logging.CRITICAL)


def set_client_log_level(level: str) -> None:
    """Per-request lines of the HTTP and Elasticsearch clients at `level` (NEWSMON_CLIENT_LOG_LEVEL)."""
    for name in ("httpx", "httpcore", "urllib3", "elastic_transport"):
        logging.getLogger(name).setLevel(level)


def log_stage(stage: str, counts: Mapping[str, object]) -> None:
    """One structured line: `stage=fetch fetched=12 failed=1 ...`."""
    STAGE_LOG.info("stage=%s %s", stage, " ".join(f"{k}={v}" for k, v in counts.items()))
