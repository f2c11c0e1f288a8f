"""Loopback servers the tests talk to: a feed/article HTTP server and an SMTP server."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from pipeline.esnode import EmbeddedNode, NodeInfo, free_port


@dataclass
class Route:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: bool = True  # answer If-None-Match with 304
    delay: float = 0.0  # seconds before answering
    trickle: float = 0.0  # seconds between 1-byte writes (a server that never finishes)
    method: str = "GET"  # "POST": a list endpoint a page's scripts query with a body; a GET gets 405


class FeedServer:
    """Serves registered routes; records every request's path and headers."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.posted: list[tuple[str, bytes]] = []  # (path, body) of every POST
        self.bytes_sent = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, body: bytes | str, **kwargs: Any) -> str:
        data = body.encode() if isinstance(body, str) else body
        self.routes[path] = Route(body=data, **kwargs)
        return self.url(path)

    def hits(self, path: str) -> list[dict[str, str]]:
        return [h for p, h in self.requests if p == path]

    def start(self) -> None:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, each waits for a delayed ACK.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with server._lock:
                    server.posted.append((self.path, body))
                self.do_GET("POST")

            def do_GET(self, method: str = "GET") -> None:
                path = self.path
                with server._lock:
                    server.requests.append((path, {k.lower(): v for k, v in self.headers.items()}))
                route = server.routes.get(path)
                if route is None:
                    self._send(404, b"not found", "text/plain", {})
                    return
                if route.method != method:
                    self._send(405, b"method not allowed", "text/plain", {"Allow": route.method})
                    return
                if route.delay:
                    time.sleep(route.delay)
                tag = '"' + hashlib.sha1(route.body).hexdigest()[:16] + '"'
                headers = dict(route.headers)
                if route.etag:
                    headers["ETag"] = tag
                    if self.headers.get("If-None-Match") == tag:
                        self._send(304, b"", None, headers)
                        return
                if route.trickle:
                    self.send_response(route.status)
                    self.send_header("Content-Type", route.content_type)
                    self.send_header("Content-Length", str(len(route.body) * 1000))
                    self.end_headers()
                    try:
                        for byte in route.body * 1000:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(route.trickle)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                self._send(route.status, route.body, route.content_type, headers)

            def _send(self, status: int, body: bytes, ctype: str | None, headers: dict[str, str]) -> None:
                self.send_response(status)
                if ctype:
                    self.send_header("Content-Type", ctype)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    return
                with server._lock:
                    server.bytes_sent += len(body)

        return Handler


class _Collect:
    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.owner.refuse:
            return "554 5.7.1 refused by test"
        if self.owner.drop_next > 0:  # an outage: the connection goes down mid-transaction, nothing is kept
            self.owner.drop_next -= 1
            server.transport.close()
            return "421 4.3.2 service not available"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.owner.messages.append((list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        # A slow server: the message is stored before the client hears "250".
        await asyncio.sleep(self.owner.delay)
        return "250 OK"


class SmtpServer:
    """aiosmtpd on loopback; `stop()` and `start()` again model a mail server outage."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.refuse = False
        self.drop_next = 0  # messages whose connection is dropped before the server takes them
        self.delay = 0.0  # seconds between taking a message and answering 250
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(_Collect(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller:
            self._controller.stop()
            self._controller = None


@contextmanager
def running_node(node: EmbeddedNode) -> Iterator[NodeInfo]:
    """A test's or the bench's own embedded node, stopped and removed even when they fail."""
    info = node.start()
    try:
        yield info
    finally:
        node.stop()
        shutil.rmtree(node.dir, ignore_errors=True)
