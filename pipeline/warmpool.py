"""The warm extraction pool: one service per pool settings, shared by the runs that follow each other.

Starting a pool costs seconds of CPU (the forkserver imports the pipeline, builds the tagger and
dateparser's tables; each worker forks from it), and a scheduled run paid them every time. The
first run starts a service (`pipeline.warmpoolservice`, its own session, outliving the run) that
holds an ArticleBuilder; later runs with the same pool settings and code send it their jobs
over a Unix socket and receive what it built. The service ends after NEWSMON_POOL_KEEP_WARM_SECONDS
with no run. Deadlines are the service's builder's, as they are a local one's.

A run never depends on the service: when it is busy (another run is using it), cannot start,
breaks or dies during the run, the run builds on its own pool, from the jobs whose results had not come back.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from enum import Enum
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

import pipeline
from pipeline.config import Settings

if TYPE_CHECKING:
    from pipeline.models import BuildFailure
    from pipeline.process import Document

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0  # for a new service to listen; it warms up after that, while the run fetches

# The settings a pool's workers read, passed to the service in its environment.
POOL_SETTINGS = (
    "config_dir",
    "cache_dir",
    "workers",
    "extract_timeout",
    "extract_wall_timeout",
    "pool_keep_warm_seconds",
)
HANDSHAKE_TIMEOUT_S = 10.0


# Messages. A run sends HELLO (or STOP, or STATUS), then each Job, then None. The service answers a Welcome
# (or BUSY), then a Result per job, then DONE, or Broken when its workers cannot start.
class Signal(Enum):
    HELLO = "hello"
    STOP = "stop"
    BUSY = "busy"
    DONE = "done"
    STATUS = "status"


@dataclass(frozen=True)
class Status:
    """The service's answer to STATUS, for `newsmon pool status`."""

    pid: int
    runs_served: int
    serving: bool
    idle_seconds: float
    keep_warm_seconds: float


@dataclass(frozen=True)
class Welcome:
    pid: int


@dataclass(frozen=True)
class Result:
    article_id: str
    document: Document | None
    failure: BuildFailure | None
    detail: str | None


@dataclass(frozen=True)
class Broken:
    reason: str


def socket_path(settings: Settings) -> Path:
    """Where the service for these pool settings and this code listens: another code or setting, another service."""
    stamp = hashlib.sha256()
    for name in POOL_SETTINGS:
        stamp.update(f"{name}={getattr(settings, name)}\n".encode())
    # Another interpreter or import path (PYTHONPATH) may run other code.
    stamp.update(f"{sys.executable} {sys.version} {os.environ.get('PYTHONPATH', '')}\n".encode())
    for source in sorted(Path(pipeline.__file__).parent.glob("*.py")):
        info = source.stat()
        stamp.update(f"{source.name} {info.st_mtime_ns} {info.st_size}\n".encode())
    # Private to this user: only its own runs may hand the service pickles.
    folder = Path(tempfile.gettempdir()) / f"newsmon-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / f"pool-{stamp.hexdigest()[:16]}.sock"


def service_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSMON_")}
    return env | {f"NEWSMON_{name.upper()}": str(getattr(settings, name)) for name in POOL_SETTINGS}


def launch(settings: Settings) -> None:
    """Start the service for `settings` unless one listens; returns at once (it warms up on its own)."""
    if settings.pool_keep_warm_seconds <= 0 or _connect(socket_path(settings)) is not None:
        return
    _start_service(settings)


def _start_service(settings: Settings) -> subprocess.Popen[bytes]:
    path = socket_path(settings)
    with path.with_suffix(".log").open("ab") as service_log:
        # Its own session and no pipe of the run's: the run's caller sees the run end when it ends.
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.warmpoolservice", str(path)],
            env=service_env(settings),
            # Where `python -m pipeline` finds the package when it is not installed; a run's own folder may go.
            cwd=Path(pipeline.__file__).parent.parent,
            stdin=subprocess.DEVNULL,
            stdout=service_log,
            stderr=service_log,
            start_new_session=True,
        )


def _connect(path: Path) -> Connection | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:  # no socket file, or no service behind it (it ended)
        sock.close()
        return None
    return Connection(sock.detach())


def attach(settings: Settings) -> tuple[Connection, int] | None:
    """A session with the warm service (started if none listens), and its pid; None when it cannot serve this run."""
    path = socket_path(settings)
    conn = _connect(path)
    if conn is None:
        started = _start_service(settings)
        deadline = time.monotonic() + START_TIMEOUT_S
        while conn is None and time.monotonic() < deadline:
            if started.poll() not in (None, 0):
                log.warning(
                    "the warm pool did not start (exit %s; see %s)", started.returncode, path.with_suffix(".log")
                )
                return None
            time.sleep(0.05)
            conn = _connect(path)
        if conn is None:
            log.warning(
                "the warm pool did not listen within %.0f s (see %s)", START_TIMEOUT_S, path.with_suffix(".log")
            )
            return None
    try:
        conn.send(Signal.HELLO)
        reply = conn.recv() if conn.poll(HANDSHAKE_TIMEOUT_S) else None
    except (OSError, EOFError):
        reply = None
    if not isinstance(reply, Welcome):
        conn.close()  # BUSY (another run has it), or it ended meanwhile
        return None
    return conn, reply.pid


def status(settings: Settings) -> Status | None:
    """What the service for these settings is doing; None when none runs."""
    conn = _connect(socket_path(settings))
    if conn is None:
        return None
    with contextlib.closing(conn):
        try:
            conn.send(Signal.STATUS)
            reply = conn.recv() if conn.poll(HANDSHAKE_TIMEOUT_S) else None
        except (OSError, EOFError):
            return None
    return reply if isinstance(reply, Status) else None


def stop(settings: Settings) -> bool:
    """Ask the service for these settings to end (after the run it serves, if any); False when none runs."""
    conn = _connect(socket_path(settings))
    if conn is None:
        return False
    with contextlib.closing(conn), contextlib.suppress(OSError):
        conn.send(Signal.STOP)
    return True
