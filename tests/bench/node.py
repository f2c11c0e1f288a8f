"""The bench's own embedded Elasticsearch node, always stopped at the end."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Settings
from pipeline.esnode import EmbeddedNode


@dataclass(frozen=True)
class BenchNode:
    url: str
    pid: int
    start_seconds: float


@contextmanager
def embedded_node(var_dir: Path) -> Iterator[BenchNode]:
    """A throwaway node (own instance folder), stopped and removed even when the bench fails."""
    node = EmbeddedNode(Settings(var_dir=var_dir), instance=f"bench-{uuid.uuid4().hex[:8]}")
    started = time.perf_counter()
    try:
        info = node.start()
        yield BenchNode(info.url, info.pid, time.perf_counter() - started)
    finally:
        node.stop()
        shutil.rmtree(node.dir, ignore_errors=True)
