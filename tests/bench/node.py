"""The bench's own embedded Elasticsearch node, always stopped at the end."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Settings
from pipeline.esnode import EmbeddedNode
from tests.servers import running_node


@dataclass(frozen=True)
class BenchNode:
    url: str
    pid: int
    start_seconds: float


@contextmanager
def embedded_node(var_dir: Path) -> Iterator[BenchNode]:
    """A throwaway node (own instance folder), stopped and removed even when the bench fails."""
    started = time.perf_counter()
    with running_node(EmbeddedNode(Settings(var_dir=var_dir), instance=f"bench-{uuid.uuid4().hex[:8]}")) as info:
        yield BenchNode(info.url, info.pid, time.perf_counter() - started)
