"""Watching the bench's process tree from a thread: peak resident memory, CPU seconds.

RSS is summed over the bench process and its children (worker processes share library
pages, so the sum over-counts a little: an upper bound). The Elasticsearch node is a
child too, but a separate server with its own fixed heap, so its tree is kept apart.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

MB = 1024 * 1024


class ProcessWatch:
    """Samples every `interval` seconds; keeps RSS peaks (overall and per labelled section)
    and the last CPU time seen of every process (so exited workers still count)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.server_root: int | None = None  # the Elasticsearch node, kept apart
        self.peak_mb = 0.0
        self.peak_section = ""
        self.section_peaks: dict[str, float] = {}
        self.server_peak_mb = 0.0
        self._cpu: dict[int, tuple[str, float]] = {}  # pid → (group, user+system seconds)
        self._section = "between sections"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="procwatch", daemon=True)
        self._me = psutil.Process()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        previous, self._section = self._section, name
        try:
            yield
        finally:
            self.sample()  # a short section still gets one sample
            self._section = previous

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far per group: bench (this process), children, elasticsearch."""
        self.sample()
        with self._lock:
            totals = {"bench": 0.0, "children": 0.0, "elasticsearch": 0.0}
            for group, seconds in self._cpu.values():
                totals[group] += seconds
            return totals

    def sample(self) -> None:
        try:
            tree = [self._me, *self._me.children(recursive=True)]
        except psutil.Error:
            return
        server = self._server_pids()
        own = server_rss = 0
        with self._lock:
            for proc in tree:
                group = "bench" if proc.pid == self._me.pid else "elasticsearch" if proc.pid in server else "children"
                try:
                    with proc.oneshot():
                        rss = proc.memory_info().rss
                        times = proc.cpu_times()
                except psutil.Error:  # exited between listing and reading
                    continue
                self._cpu[proc.pid] = (group, times.user + times.system)
                if group == "elasticsearch":
                    server_rss += rss
                else:
                    own += rss
            mb, label = own / MB, self._section
            self.section_peaks[label] = max(self.section_peaks.get(label, 0.0), mb)
            self.server_peak_mb = max(self.server_peak_mb, server_rss / MB)
            if mb > self.peak_mb:
                self.peak_mb, self.peak_section = mb, label

    def _server_pids(self) -> set[int]:
        if self.server_root is None:
            return set()
        try:
            root = psutil.Process(self.server_root)
            return {root.pid, *(c.pid for c in root.children(recursive=True))}
        except psutil.Error:
            return set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()
