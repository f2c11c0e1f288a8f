"""Extract stage: the article body with trafilatura, cheap page metadata, a quality gate.

trafilatura's own metadata search roughly doubles the cost of a page, and the
feed entry already gives title, date and author; so the body comes from
trafilatura and the metadata from a few meta tags read directly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import trafilatura
from lxml.html import HtmlElement
from trafilatura.utils import load_html

from pipeline.dates import LANGUAGE_ZONES
from pipeline.models import Extracted, Extraction
from pipeline.pagedate import DateSource, page_date
from pipeline.titles import clean_title

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
# Words of space-separated scripts (Latin, Cyrillic, Greek, Arabic …): letters that are not CJK.
_WORD = re.compile(r"[^\W\d_\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]+")
# "Far too short" for an article: a caption or a teaser, counted per script. A one-paragraph
# brief (a wire lead: "中新社北京9月8日电 …中方对此表示不满。") is above it.
MIN_CJK_CHARS = 30
MIN_WORDS = 15
# A list page's body is nearly all short lines (headlines, counters, share buttons).
LIST_MIN_LINES = 8
LIST_SHORT_LINE = 25
LIST_SHORT_SHARE = 0.9
LIST_MAX_LONG_LINES = 2  # lines of 60+ characters: paragraphs
# Paths of front and index pages: "/", "/index.html", "/news/list_2.shtml". Deeper or dated
# paths are articles even as index files (CNN's /2019/11/18/politics/…/index.html); a path
# like "/world/" may be a section or a WordPress slug: the body decides those.
_ROOT_OR_INDEX = re.compile(r"^/(?:[a-z]+/)?(?:(?:index|default|home|list|main)(?:[_\-]\d+)?(?:\.\w+)?)?$", re.I)
MIN_HEADLINE_CHARS = 8
_SOFT_404 = re.compile(
    r"(page not found|404 not found|^404\b|页面不存在|頁面不存在|找不到(该|該)?页面|找不到網頁|ページが見つかりません"
    r"|お探しのページ|该内容已被删除|內容已被刪除)",
    re.IGNORECASE,
)
# Phrases of consent banners only: "consent" or 同意する alone occur in real reporting.
_CONSENT = re.compile(
    r"(we use cookies|cookie (settings|preferences)|accept (all )?cookies|reject (all )?cookies"
    r"|manage (your )?cookies|我们使用\s*cookie|接受所有\s*cookie|cookieの使用に同意|クッキーの使用に同意)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class PageMeta:
    title: str | None
    author: str | None
    site_name: str | None


def page_metadata(tree: HtmlElement) -> PageMeta:
    """Title, author and site name from meta tags and JSON-LD (the date is pagedate's)."""
    metas: dict[str, str] = {}
    for meta in tree.iter("meta"):
        key = (meta.get("property") or meta.get("name") or meta.get("itemprop") or "").strip().lower()
        if key and meta.get("content") and key not in metas:
            metas[key] = meta.get("content", "").strip()
    author = metas.get("author") or metas.get("article:author")
    for script in tree.xpath('//script[@type="application/ld+json"]/text()')[:5]:
        author = author or _ld(_json(script), "author")
    title = metas.get("og:title") or (tree.findtext(".//title") or "").strip() or None
    return PageMeta(title=title, author=author, site_name=metas.get("og:site_name"))


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _ld(data: object, key: str) -> str | None:
    items = data if isinstance(data, list) else [data]
    for item in items:
        if isinstance(item, dict) and item.get(key):
            value = item[key]
            if isinstance(value, dict):
                value = value.get("name")
            if isinstance(value, list) and value:
                value = value[0].get("name") if isinstance(value[0], dict) else value[0]
            return str(value) if value else None
    return None


def extract_body(html: str | HtmlElement, url: str | None = None) -> str:
    """trafilatura's main-text extraction, without its fallback extractors.

    `fast` skips the readability/jusText fallbacks: on the shared benchmark it scores
    slightly higher than the defaults and costs about a third less CPU (`make bench`).
    """
    return trafilatura.extract(html, url=url, fast=True, with_metadata=False, include_comments=False) or ""


def quality_problem(title: str, body: str) -> str | None:
    """Why a body is not an article (soft 404, consent wall, too short), or None."""
    head = f"{title}\n{body[:300]}"
    if _SOFT_404.search(head):
        return "soft_404"
    if len(_CONSENT.findall(body[:2000])) >= 2 and len(body) < 3000:
        return "consent_wall"
    cjk = len(_CJK.findall(body))
    words = len(_WORD.findall(body))
    if cjk < MIN_CJK_CHARS and words < MIN_WORDS:
        return "too_short"
    return None


def headline_links(tree: HtmlElement) -> set[str]:
    """Texts of links to other pages long enough to be headlines (what a list page is made of).

    In-page links (`#…`) are left out: a table of contents repeats the article's own headings.
    """
    texts = (" ".join(a.text_content().split()) for a in tree.iter("a") if not a.get("href", "#").startswith("#"))
    return {t for t in texts if len(t) >= MIN_HEADLINE_CHARS}


def is_list_page(body: str, headlines: set[str], url: str | None = None) -> bool:
    """A front, section or index page rather than an article.

    Its URL is a site root or an index file; or its body is mostly link headlines, or
    mostly short lines on a page full of links (news front pages, forum boards), or
    near-empty on such a page.
    """
    if url and _ROOT_OR_INDEX.match(urlsplit(url).path or "/") and not urlsplit(url).query:
        return True
    lines = [" ".join(line.split()) for line in body.splitlines() if line.strip()]
    if len(lines) >= 5 and sum(line in headlines for line in lines) >= 0.5 * len(lines):
        return True
    if len(headlines) >= 20 and len(lines) >= LIST_MIN_LINES:
        short = sum(len(line) < LIST_SHORT_LINE for line in lines)
        long = sum(len(line) >= 60 for line in lines)
        if short >= LIST_SHORT_SHARE * len(lines) and long <= LIST_MAX_LONG_LINES:
            return True
    return len(headlines) >= 20 and quality_problem("", body) == "too_short"


def extract(
    html: str,
    url: str | None,
    language: str = "en",
    timezone: str | None = None,
    fallback_title: str = "",
    fallback_summary: str = "",
    now: datetime | None = None,
) -> Extracted:
    """Extract one page.

    Args:
        html: the decoded page.
        url: its address, for trafilatura's link handling.
        language, timezone: the feed's, for dates without a zone (else the page's language or domain).
        fallback_title, fallback_summary: the feed entry's, used when the page yields nothing usable.
        now: the fetch time; page dates after it are not publication dates.

    Returns:
        Extracted with status ok, or fallback (feed text) / failed with a reason.
    """
    tree = load_html(html)
    if tree is None:
        return _fallback(fallback_title, fallback_summary, None, "unparseable_html")
    meta = page_metadata(tree)
    zone = timezone or (LANGUAGE_ZONES.get(language) if language != "en" else None)
    published = page_date(tree, url, zone, now or datetime.now(UTC))
    title_full = meta.title or fallback_title
    h1 = next((" ".join(h.text_content().split()) for h in tree.iter("h1") if h.text_content().strip()), None)
    title = clean_title(title_full, [meta.site_name or ""], h1, url)
    headlines = headline_links(tree)  # before trafilatura, which prunes the tree
    body = extract_body(tree, url)
    problem = "list_page" if is_list_page(body, headlines, url) else quality_problem(title, body)
    if problem:
        return _fallback(fallback_title or title, fallback_summary, meta, problem, title_full)
    return Extracted(
        title=title,
        title_full=title_full,
        body=body,
        author=meta.author,
        published=published.value if published else None,
        published_has_time=published.has_time if published else False,
        zone_assumed=published.zone_assumed if published else False,
        published_guessed=bool(published and published.source is DateSource.HTMLDATE),
        site_name=meta.site_name,
        status=Extraction.OK,
    )


def _fallback(title: str, summary: str, meta: PageMeta | None, reason: str, title_full: str = "") -> Extracted:
    usable = bool(title or summary)
    return Extracted(
        title=title,
        title_full=title_full or title,
        body=summary,
        author=meta.author if meta else None,
        published=None,
        site_name=meta.site_name if meta else None,
        status=Extraction.FALLBACK if usable else Extraction.FAILED,
        reason=reason,
    )
