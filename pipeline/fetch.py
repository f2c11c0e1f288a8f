"""Fetch stage: polite, bounded HTTP for feeds and article pages.

Every request has connect/read timeouts, a total deadline, a cap on the
decompressed body (a gzip bomb stops at the cap), a per-host concurrency
limit, and redirects followed hop by hop. Every connection goes to an address
checked to be public on an allowed port (the name is resolved once, by the guard,
not again by httpx), unless NEWSMON_FETCH_ALLOW_PRIVATE_HOSTS is set.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import logging
import re
import socket
import ssl
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urljoin, urlsplit

import charset_normalizer
import httpcore
import httpx

from pipeline.config import Settings
from pipeline.googlenews import is_google_news
from pipeline.models import FeedEntry, Page
from pipeline.urls import UrlError, canonical_url, is_public_address, odd_ipv4_spelling

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
HTML_TYPES = ("text/html", "application/xhtml+xml")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_\-]+)""", re.IGNORECASE)
# Legacy CJK labels decode with their superset codecs (GB2312 pages use GBK characters).
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "big5": "big5hkscs",
    "shift_jis": "cp932",
    "euc_jp": "euc_jis_2004",
}
# Labels servers send by default or by mistake: never trusted without checking.
WEAK_LABELS = {"latin_1", "iso8859_1", "cp1252", "ascii"}


class FetchReason(StrEnum):
    """Why a request gave no usable answer: the word an entry or article records."""

    BAD_URL = "bad_url"
    DNS_ERROR = "dns_error"
    PRIVATE_ADDRESS = "private_address"
    PORT_REFUSED = "port_refused"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    BAD_ENCODING = "bad_encoding"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    TOO_LARGE = "too_large"
    HTTP_STATUS = "http"  # recorded with the status: http_404
    NOT_HTML = "not_html"
    GOOGLE_NEWS_UNRESOLVED = "google_news_unresolved"
    ANTI_BOT_CHALLENGE = "anti_bot_challenge"
    XML_ENTITY_BOMB = "xml_entity_bomb"
    MALFORMED_FEED = "malformed_feed"
    MALFORMED_SITEMAP = "malformed_sitemap"
    MALFORMED_JSON = "malformed_json"


class FetchError(Exception):
    """A request failed; `label` is the short word for the index, `transient` says whether to retry."""

    def __init__(
        self, url: str, reason: FetchReason, detail: str = "", *, status: int | None = None, transient: bool = False
    ) -> None:
        self.url = url
        self.reason = reason
        self.label = f"http_{status}" if reason is FetchReason.HTTP_STATUS else reason.value
        self.transient = transient
        super().__init__(f"{url}: {self.label}{': ' + detail if detail else ''}")


@dataclass(frozen=True)
class Response:
    url: str  # as requested
    final_url: str
    status_code: int
    headers: httpx.Headers
    body: bytes
    truncated: bool


class HostLimiter:
    """A global limit plus a per-host limit on concurrent requests."""

    def __init__(self, total: int, per_host: int) -> None:
        self._total = asyncio.Semaphore(total)
        self._per_host: defaultdict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(per_host))

    def host(self, url: str) -> asyncio.Semaphore:
        return self._per_host[urlsplit(url).netloc]

    @property
    def total(self) -> asyncio.Semaphore:
        return self._total


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves each connection's host itself, checks every address, and connects to the checked one.

    httpx would resolve the name again when it connects (a DNS-rebinding window); here the
    address checked is the address used. TLS still verifies and sends SNI for the URL's
    host name, and the Host header is the URL's, because only the TCP connect is redirected.
    """

    def __init__(self, settings: Settings) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._settings = settings

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = await checked_address(host, port, self._settings)
        return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise FetchError(path, FetchReason.BAD_URL, "unix sockets are never fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def checked_address(host: str, port: int, settings: Settings) -> str:
    """The address to connect to for host:port, after refusing anything not public.

    Raises:
        FetchError: `private_address` or `port_refused`; `dns_error` (transient) when the name does not resolve.
    """
    where = f"{host}:{port}"
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise FetchError(where, FetchReason.DNS_ERROR, str(exc), transient=True) from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise FetchError(where, FetchReason.DNS_ERROR, "no address", transient=True)
    if settings.fetch_allow_private_hosts:
        return addresses[0]
    listed = host.lower() in {h.lower() for h in settings.fetch_allowed_hosts}
    # Every address must pass: a name with one public and one loopback address is refused.
    blocked = [] if listed else [a for a in addresses if not is_public_address(a)]
    if blocked:
        raise FetchError(
            where,
            FetchReason.PRIVATE_ADDRESS,
            f"{host} resolves to {blocked[0]}; list it in NEWSMON_FETCH_ALLOWED_HOSTS to allow",
        )
    if port not in {80, 443, *settings.fetch_allowed_ports}:
        raise FetchError(
            where, FetchReason.PORT_REFUSED, f"port {port} is not 80, 443 or in NEWSMON_FETCH_ALLOWED_PORTS"
        )
    return addresses[0]


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """Loading the CA bundle takes about 0.1 s: once per process, not once per client."""
    return httpx.create_ssl_context()


def make_client(settings: Settings) -> httpx.AsyncClient:
    timeout = httpx.Timeout(settings.fetch_read_timeout, connect=settings.fetch_connect_timeout)
    limits = httpx.Limits(max_connections=settings.fetch_max_concurrency, max_keepalive_connections=20)
    # No proxies from the environment: a proxy would resolve and connect where the guard cannot see.
    transport = httpx.AsyncHTTPTransport(verify=_tls_context(), limits=limits, trust_env=False)
    # httpx has no public way to pass httpcore a network backend; its pool keeps it here.
    transport._pool._network_backend = GuardedBackend(settings)
    return httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": settings.user_agent, "Accept-Encoding": "gzip, deflate"},
    )


async def http_get(
    client: httpx.AsyncClient,
    url: str,
    settings: Settings,
    limiter: HostLimiter,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Response:
    """GET (a POST of `body` when given) with every limit applied; a redirect is followed with a GET.

    Raises:
        FetchError: refused, timed out, or failed; `transient` when a retry may help.
    """
    current = url
    deadline: float | None = None
    for _ in range(MAX_REDIRECTS + 1):
        await _check_host(current, settings)
        async with limiter.host(current), limiter.total:
            # The clock starts once a slot is ours: waiting in line is not the server's fault.
            deadline = deadline or asyncio.get_running_loop().time() + settings.fetch_total_timeout
            try:
                async with (
                    asyncio.timeout_at(deadline),
                    client.stream("POST" if body else "GET", current, headers=headers or {}, content=body) as response,
                ):
                    if response.is_redirect and "location" in response.headers:
                        current = urljoin(current, response.headers["location"])
                        body = None
                        continue
                    body, truncated = await _read_capped(response, settings.fetch_max_bytes)
                    return Response(url, current, response.status_code, response.headers, body, truncated)
            except TimeoutError:
                raise FetchError(
                    current,
                    FetchReason.TIMEOUT,
                    f"no complete answer in {settings.fetch_total_timeout:.0f}s",
                    transient=True,
                ) from None
            except httpx.TimeoutException as exc:
                raise FetchError(current, FetchReason.TIMEOUT, type(exc).__name__, transient=True) from None
            except httpx.DecodingError as exc:
                raise FetchError(current, FetchReason.BAD_ENCODING, str(exc)[:200]) from None
            except httpx.HTTPError as exc:
                raise FetchError(
                    current, FetchReason.CONNECTION_ERROR, str(exc)[:200] or type(exc).__name__, transient=True
                ) from None
    raise FetchError(url, FetchReason.TOO_MANY_REDIRECTS, f"more than {MAX_REDIRECTS}")


async def _read_capped(response: httpx.Response, cap: int) -> tuple[bytes, bool]:
    """The body, decompressed, cut at `cap` bytes; True when it was cut.

    Compressed bodies are inflated here in bounded steps (httpx would inflate a
    whole network chunk at once, and a gzip bomb turns 64 kB into 64 MB).
    """
    chunks: list[bytes] = []
    size = 0
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in {"gzip", "x-gzip", "deflate"}:
        inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)  # gzip or zlib framing
        async for raw in response.aiter_raw():
            data = raw
            while data:
                try:
                    out = inflater.decompress(data, cap + 1 - size)
                except zlib.error as exc:
                    raise FetchError(str(response.url), FetchReason.BAD_ENCODING, str(exc)) from None
                chunks.append(out)
                size += len(out)
                if size > cap:
                    return b"".join(chunks)[:cap], True
                data = inflater.unconsumed_tail
        return b"".join(chunks), False
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            return b"".join(chunks)[:cap], True
    return b"".join(chunks), False


async def _check_host(url: str, settings: Settings) -> None:
    """Refuse what the URL alone shows; the address itself is checked at connect (GuardedBackend)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise FetchError(url, FetchReason.BAD_URL, "only absolute http(s) URLs are fetched")
    if settings.fetch_allow_private_hosts:
        return
    if odd_ipv4_spelling(parts.hostname):
        raise FetchError(
            url, FetchReason.PRIVATE_ADDRESS, f"{parts.hostname} is an IPv4 address in an unusual spelling"
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchError(url, FetchReason.BAD_URL, "bad port") from None
    # Resolved and checked now too, so a refused page fails before it waits for a host slot.
    await checked_address(parts.hostname, port, settings)


def decode_html(body: bytes, content_type: str) -> tuple[str, str]:
    """Decode a page whose declared charset may be wrong or missing; returns (text, codec)."""
    declared = [codec_for(m) for m in (_header_charset(content_type), _meta_charset(body))]
    if body.startswith(codecs.BOM_UTF8):
        return body[3:].decode("utf-8", "replace"), "utf-8"
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(body) - 3:  # a page cut at the size cap ends mid-character
            return body[: exc.start].decode("utf-8"), "utf-8"
    for codec in declared:
        if codec and codec not in WEAK_LABELS and codec != "utf_8":
            try:
                return body.decode(codec), codec
            except UnicodeDecodeError:
                continue
    guess = charset_normalizer.from_bytes(body[:200_000]).best()
    codec = codec_for(guess.encoding) if guess else None
    codec = codec or next((c for c in declared if c), None) or "utf_8"
    return body.decode(codec, "replace"), codec


def _header_charset(content_type: str) -> str | None:
    match = re.search(r"charset=([\w\-]+)", content_type or "", re.IGNORECASE)
    return match.group(1) if match else None


def _meta_charset(body: bytes) -> str | None:
    match = _META_CHARSET.search(body[:4096])
    return match.group(1).decode("ascii", "ignore") if match else None


def codec_for(label: str | None) -> str | None:
    """The Python codec for a charset label, widened to its superset (gb2312 → gb18030); None if unknown."""
    if not label:
        return None
    try:
        name = codecs.lookup(label).name.replace("-", "_")
    except LookupError:
        return None
    return _SUPERSETS.get(name, name)


def is_html(content_type: str, body: bytes) -> bool:
    ctype = content_type.split(";", maxsplit=1)[0].strip().lower()
    if ctype:
        return ctype in HTML_TYPES
    head = body[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<body" in head


async def fetch_page(
    client: httpx.AsyncClient,
    entry: FeedEntry,
    settings: Settings,
    limiter: HostLimiter,
) -> Page:
    """Fetch one article page.

    Raises:
        FetchError: with reasons such as http_404, not_html, private_address, timeout.
    """
    response = await http_get(client, entry.link, settings, limiter)
    if response.status_code >= 400:
        raise FetchError(
            entry.link,
            FetchReason.HTTP_STATUS,
            status=response.status_code,
            transient=response.status_code >= 500 or response.status_code == 429,
        )
    if is_google_news(entry.link) and is_google_news(response.final_url):
        raise FetchError(
            entry.link,
            FetchReason.GOOGLE_NEWS_UNRESOLVED,
            "no HTTP redirect to the publisher; indexed from the item under "
            + (f"{entry.outlet} ({entry.outlet_url})" if entry.outlet_url else "the feed (the item names no <source>)"),
        )
    content_type = response.headers.get("content-type", "")
    if not is_html(content_type, response.body):
        raise FetchError(entry.link, FetchReason.NOT_HTML, content_type.split(";")[0] or "unknown type")
    html, codec = decode_html(response.body, content_type)
    try:
        final = canonical_url(response.final_url)
    except UrlError:
        final = response.final_url
    if response.truncated:
        log.info("page %s cut at %d bytes", entry.link, settings.fetch_max_bytes)
    return Page(
        url=entry.url,
        final_url=final,
        status_code=response.status_code,
        content_type=content_type.split(";")[0],
        charset=codec,
        html=html,
        bytes=len(response.body),
        truncated=response.truncated,
        fetched_at=datetime.now(UTC),
    )


async def fetch_pages(
    entries: Iterable[FeedEntry],
    settings: Settings,
) -> list[tuple[FeedEntry, Page | FetchError]]:
    """Fetch many pages concurrently; each result is a Page or the error that stopped it."""
    limiter = HostLimiter(settings.fetch_max_concurrency, settings.fetch_per_host_concurrency)
    async with make_client(settings) as client:

        async def one(entry: FeedEntry) -> tuple[FeedEntry, Page | FetchError]:
            try:
                return entry, await fetch_page(client, entry, settings, limiter)
            except FetchError as exc:
                return entry, exc

        return list(await asyncio.gather(*(one(e) for e in entries)))
