"""tests.servers.FeedServer, run in a process of its own.

In the bench process its handler threads would share one GIL with the client being
measured, and a 304 re-poll of 1,000 feeds measured 2-4× slower that way than with the
server in another process. Real feeds are served by other machines.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any

from tests.servers import FeedServer


class NoDelayFeedServer(FeedServer):
    """FeedServer with TCP_NODELAY on its sockets.

    FeedServer writes the headers and the body in two sends; with Nagle's algorithm on,
    the body waits for the client's delayed ACK of the headers (about 40 ms on Linux), so
    every response with a body would cost the client 40 ms that no real web server charges.
    It also notes when each request came, on CLOCK_MONOTONIC, which every process shares.
    """

    def __init__(self) -> None:
        super().__init__()
        self.request_times: list[tuple[str, float]] = []  # (path, time.monotonic())

    def _handler(self) -> Any:
        handler = super()._handler()
        server = self

        def do_get(request: Any, method: str = "GET") -> None:
            server.request_times.append((request.path, time.monotonic()))
            handler.do_GET(request, method)

        return type("NoDelayHandler", (handler,), {"disable_nagle_algorithm": True, "do_GET": do_get})


def _serve(conn: Connection, routes: dict[str, tuple[bytes, str]]) -> None:
    server = NoDelayFeedServer()
    for path, (body, content_type) in routes.items():
        server.add(path, body, content_type=content_type)
    server.start()
    conn.send(server.port)
    try:
        while True:
            command, *args = conn.recv()
            if command == "bytes":
                conn.send(server.bytes_sent)
            elif command == "requests":
                conn.send(len(server.requests))
            elif command == "request_times":
                conn.send(list(server.request_times))
            elif command == "add":
                path, body, content_type = args
                server.add(path, body, content_type=content_type)
                conn.send(True)
            else:
                break
    finally:
        server.stop()


class FeedHost:
    """Starts the server process; asks it for bytes sent; adds routes while it runs."""

    def __init__(self, routes: dict[str, tuple[bytes, str]] | None = None) -> None:
        self._routes = routes or {}
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self.port = 0

    def __enter__(self) -> FeedHost:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded bench process
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, self._routes), daemon=True, name="feedhost")
        self._process.start()
        self.port = self._conn.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):  # the server process is already gone
                self._conn.send(("stop",))
        if self._process is not None:
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bytes_sent(self) -> int:
        """Body bytes the server has written so far (FeedServer.bytes_sent)."""
        return int(self._ask("bytes"))

    def requests(self) -> int:
        return int(self._ask("requests"))

    def request_times(self) -> list[tuple[str, float]]:
        """(path, time.monotonic()) of every request so far, in arrival order."""
        return list(self._ask("request_times"))

    def add(self, path: str, body: str | bytes, content_type: str = "text/html; charset=utf-8") -> str:
        data = body.encode() if isinstance(body, str) else body
        self._ask("add", path, data, content_type)
        return self.url(path)

    def _ask(self, *message: Any) -> Any:
        assert self._conn is not None, "FeedHost used outside its with-block"
        self._conn.send(message)
        return self._conn.recv()
