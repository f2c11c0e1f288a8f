"""`newsmon extract` and `newsmon inspect`: run the stages on files or URLs, index nothing."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline.clutter import clean_plain_text
from pipeline.config import ConfigError, Settings
from pipeline.extract import extract
from pipeline.fetch import FetchError, HostLimiter, decode_html, http_get, make_client
from pipeline.models import Extracted
from pipeline.tag import get_tagger


def _read(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    return gzip.decompress(data) if path.suffix == ".gz" else data


async def _download(settings: Settings, url: str) -> tuple[bytes, str]:
    limiter = HostLimiter(1, 1)
    async with make_client(settings) as client:
        response = await http_get(client, url, settings, limiter)
    if response.status_code >= 400:
        raise FetchError(url, f"http_{response.status_code}")
    return response.body, response.headers.get("content-type", "")


def _extract_one(settings: Settings, source: str) -> Extracted:
    if source.startswith(("http://", "https://")):
        body, content_type = asyncio.run(_download(settings, source))
        html, _ = decode_html(body, content_type)
        return extract(html, source)
    html, _ = decode_html(_read(Path(source)), "")
    return extract(html, None)


def extract_sources(settings: Settings, sources: list[str]) -> Iterator[dict[str, Any]]:
    for source in sources:
        try:
            result = _extract_one(settings, source)
        except FetchError as exc:
            yield {
                "source": source,
                "title": "",
                "body": "",
                "published_at": None,
                "status": "failed",
                "reason": str(exc),
            }
            continue
        yield {
            "source": source,
            "title": result.title,
            "body": result.body,
            "published_at": result.published.isoformat() if result.published else None,
            "author": result.author,
            "site_name": result.site_name,
            "status": result.status.value,
            "reason": result.reason,
        }


def inspect_files(settings: Settings, files: list[Path]) -> Iterator[dict[str, Any]]:
    tagger = get_tagger(settings)
    for path in files:
        name = path.name.removesuffix(".gz")
        if name.endswith((".html", ".htm")):
            html, _ = decode_html(_read(path), "")
            extracted = extract(html, None)
            title, body, status = extracted.title, extracted.body, extracted.status.value
        else:
            text = _read(path).decode("utf-8", "replace")
            title, body, status = "", clean_plain_text(text), "ok"
            title = body.split("\n", 1)[0][:200]
        tags = tagger.tag(title, body)
        yield {
            "source": str(path),
            "title": title,
            "status": status,
            "language": tags.language,
            "script": tags.script,
            "entities": tags.entities,
            "keywords": tags.keywords,
            "watch_terms": tags.watch_terms,
            "relevance": asdict(tags.relevance),
        }
