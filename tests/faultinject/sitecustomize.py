"""Fault injection for a real `newsmon run --once` subprocess (on PYTHONPATH only in those tests).

A page containing NEWSMON-TEST-SEGFAULT kills the extracting process with SIGSEGV, as a
crash in lxml's C code would; one containing NEWSMON-TEST-HANG spins in the regex
engine's C code, where no Python signal handler runs, as a catastrophic pattern would; one
containing NEWSMON-TEST-WAITS waits 4 s without using the CPU, as a normal page does on a
machine whose cores are busy with other work; one containing NEWSMON-TEST-BLOCKS deadlocks,
blocked for good without using the CPU, as a worker stuck in a syscall or on a lock would.
With NEWSMON_TEST_RETAG_BLOCKS set, `retag` tags on workers whatever its size, and every
worker deadlocks on its first chunk.
"""

import os
import re
import signal
import threading
import time

import pipeline.extract

_real_extract = pipeline.extract.extract


def _deadlock() -> None:
    lock = threading.Lock()
    lock.acquire()
    lock.acquire()


def _extract(html: str, *args, **kwargs):  # type: ignore[no-untyped-def]
    if "NEWSMON-TEST-SEGFAULT" in html:
        os.kill(os.getpid(), signal.SIGSEGV)
    if "NEWSMON-TEST-HANG" in html:
        re.match(r"(a+)+$", "a" * 40 + "b")  # about 2**40 steps, all inside one C call
    if "NEWSMON-TEST-WAITS" in html:
        time.sleep(4)
    if "NEWSMON-TEST-BLOCKS" in html:
        _deadlock()
    return _real_extract(html, *args, **kwargs)


pipeline.extract.extract = _extract


if os.environ.get("NEWSMON_TEST_RETAG_BLOCKS"):
    import pipeline.index
    import pipeline.tagpool

    pipeline.index.RETAG_POOL_FROM = 1

    def _blocked_tag_with(*args, **kwargs):  # type: ignore[no-untyped-def]
        _deadlock()

    pipeline.tagpool._tag_with = _blocked_tag_with
