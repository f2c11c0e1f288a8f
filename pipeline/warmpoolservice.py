"""The warm pool's service process: `python -m pipeline.warmpoolservice SOCKET` (started by pipeline.warmpool).

It listens before it imports anything heavy, so a run attaches at once and its pages download
while the pool warms up. One run at a time is served (another is told BUSY and builds on its
own pool); the builder and its workers stay between runs. It ends after
NEWSMON_POOL_KEEP_WARM_SECONDS with no run, when asked to (`newsmon pool stop`), or when its
pool cannot start. A lock file held for its life makes it the only service on its socket.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import load_settings
from pipeline.logs import setup_logging
from pipeline.warmpool import HANDSHAKE_TIMEOUT_S, Broken, Result, Signal, Status, Welcome

if TYPE_CHECKING:
    from pipeline.process import ArticleBuilder, JobFeed

log = logging.getLogger("newsmon.warmpool")

ACCEPT_POLL_S = 1.0  # how often the idle limit is looked at


class Service:
    def __init__(self, builder: ArticleBuilder, keep_warm: float) -> None:
        self.builder = builder
        self.keep_warm = keep_warm
        self.idle_since = time.monotonic()
        self.ending = False
        self.runs_served = 0
        self._busy = threading.Lock()

    def done(self) -> bool:
        """Asked to end (or broken), or idle too long, and serving no run: a run being served is finished first."""
        if not self._busy.acquire(blocking=False):
            return False
        try:
            return self.ending or time.monotonic() - self.idle_since > self.keep_warm
        finally:
            self._busy.release()

    def session(self, conn: Connection) -> None:
        with contextlib.closing(conn):
            try:
                hello = conn.recv() if conn.poll(HANDSHAKE_TIMEOUT_S) else None
            except (OSError, EOFError):
                return
            if hello is Signal.STOP:
                self.ending = True
                return
            if hello is Signal.STATUS:
                with contextlib.suppress(OSError):
                    conn.send(self._status())
                return
            if hello is not Signal.HELLO:
                return
            if not self._busy.acquire(blocking=False):
                with contextlib.suppress(OSError):
                    conn.send(Signal.BUSY)
                return
            try:
                self._serve(conn)
            finally:
                self.runs_served += 1
                self.idle_since = time.monotonic()
                self._busy.release()

    def _status(self) -> Status:
        serving = not self._busy.acquire(blocking=False)
        if not serving:
            self._busy.release()
        idle = 0.0 if serving else time.monotonic() - self.idle_since
        return Status(os.getpid(), self.runs_served, serving, idle, self.keep_warm)

    def _serve(self, conn: Connection) -> None:
        from pipeline.process import JobFeed

        conn.send(Welcome(os.getpid()))
        feed = JobFeed()
        threading.Thread(target=_receive, args=(conn, feed), name="receive-jobs", daemon=True).start()
        served = 0
        connected = True
        try:
            for built in self.builder.build(feed):
                served += 1
                if connected:  # a run that went away leaves its jobs to finish, unanswered
                    try:
                        conn.send(Result(built.job.entry.article_id, built.document, built.failure, built.detail))
                    except OSError:
                        connected = False
        except RuntimeError as exc:  # the workers cannot start: this service is no use to anyone
            log.error("warm pool broken: %s", exc)
            self.ending = True
            with contextlib.suppress(OSError):
                conn.send(Broken(str(exc)))
            return
        log.info("warm pool served a run: %d pages", served)
        with contextlib.suppress(OSError):
            conn.send(Signal.DONE)


def _receive(conn: Connection, feed: JobFeed) -> None:
    try:
        while (job := conn.recv()) is not None:
            feed.put(job)
    except (OSError, EOFError):
        pass
    feed.close()


def main(path: Path) -> int:
    setup_logging()
    lock = path.with_suffix(".lock").open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another service holds this socket (two runs started one each)
    path.unlink(missing_ok=True)  # a service that was killed left it
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    listener.settimeout(ACCEPT_POLL_S)
    settings = load_settings()
    from pipeline.process import ArticleBuilder  # after listening: runs attach while this imports

    log.info(
        "warm pool %d listening on %s, kept warm %.0f s after each run",
        os.getpid(),
        path,
        settings.pool_keep_warm_seconds,
    )
    try:
        with ArticleBuilder(settings) as builder:
            builder.start()
            service = Service(builder, settings.pool_keep_warm_seconds)
            while not service.done():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                client.settimeout(None)
                conn = Connection(client.detach())
                threading.Thread(target=service.session, args=(conn,), name="session", daemon=True).start()
    finally:
        path.unlink(missing_ok=True)  # before the lock goes: a new service never loses its socket to this one
        listener.close()
    log.info("warm pool %d ended", os.getpid())
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
