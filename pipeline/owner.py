"""Worker processes that end when the process that started them does, even when it is killed outright."""

from __future__ import annotations

import os
import select
import threading


def end_with(owner: int) -> None:
    """Exit this worker as soon as `owner`, the process that started the pool, has ended, however.

    A worker's parent is the forkserver, not the owner, and the worker holds both the pool's
    call queue and the forkserver's liveness pipe open: once the owner is SIGKILLed, nothing
    would ever wake the worker or end the forkserver, and both would live on as orphans.
    """
    try:
        pidfd = os.pidfd_open(owner)  # readable once the process has exited (Linux 5.3)
    except ProcessLookupError:
        os._exit(1)
    threading.Thread(target=_exit_when_readable, args=(pidfd,), name="owner-watch", daemon=True).start()


def _exit_when_readable(fd: int) -> None:
    select.select([fd], [], [])
    # The forkserver ends by itself once its last client is gone, so this ends it too.
    os._exit(1)
