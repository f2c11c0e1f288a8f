"""Listings as sources: an HTML page (an official announcement list, a news index) whose
article links are found on the page itself.

A link counts as an article when it stays on the site, is not in the page's
chrome (nav, header, footer, sidebar, breadcrumbs, pagination, tag clouds), is
shaped like an article URL (a date or a numeric id in the path, or a long slug;
not a section, topic or page-2 URL: courlan's navigation filter) and has a
headline-like text. A site these rules do not fit names, in feeds.yaml, a CSS
`selector` for the element(s) holding its article links and/or a `url_pattern`
its article URLs match. The date printed beside a link (2025-11-20, 2025年11月20日,
2025/11/20) becomes the entry's date, for pages that show none themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl, urljoin, urlsplit

import courlan
import lxml.html
from lxml import etree
from lxml.cssselect import CSSSelector, SelectorError
from tld import get_fld

from pipeline.fetch import decode_html
from pipeline.models import Feed, ListingRules, ParsedFeed
from pipeline.sourceentries import EntryCollector
from pipeline.urls import UrlError, canonical_url

__all__ = ["SelectorError", "article_links", "parse_listing", "selector_for"]

_CHROME_TAGS = {"nav", "header", "footer", "aside", "menu", "form", "select", "button", "noscript"}
_CHROME_ROLES = {"navigation", "banner", "contentinfo", "complementary", "menu", "menubar", "search"}
# Words in class or id names that mark page chrome (compared as whole tokens: "headline" is not "head").
_CHROME_TOKENS = {
    "nav", "navbar", "navigation", "menu", "submenu", "footer", "foot", "header", "sidebar", "side", "aside",
    "breadcrumb", "breadcrumbs", "crumbs", "crumb", "pagination", "pager", "paging", "pagebar", "pagenav",
    "tags", "tagcloud", "topics", "share", "social", "copyright", "friendlink", "friendlinks", "links", "sitemap",
}  # fmt: skip
_TOKEN_SPLIT = re.compile(r"[\s_\-]+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_PAGINATION_FILE = re.compile(r"^(index|list|default|page)?[_\-]?\d{1,3}\.s?html?$", re.IGNORECASE)
_PAGINATION_PARAMS = {"page", "p", "pn", "pg", "paged", "start", "offset"}
_INDEX_FILE = re.compile(r"^(index|default|list|home)\.(s?html?|php|aspx?|jsp)$", re.IGNORECASE)
_PAGE_SUFFIX = re.compile(r"\.(s?html?|php|aspx?|jsp)$", re.IGNORECASE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")
_DATE = re.compile(r"(20\d{2}|19\d{2})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?")
_DATE_CONTAINERS = {"li", "tr", "dd", "dt", "article", "p", "div", "section", "td", "span"}
# Path segments of sections, topics and searches (beyond courlan's navigation filter).
_SECTION_SEGMENTS = {
    "search", "special", "specials", "topic", "topics", "tag", "tags", "category", "categories", "column",
    "columns", "channel", "channels", "author", "authors", "login", "register", "subscribe",
}  # fmt: skip
# The pager's "next page" link, when the page has no rel="next".
_NEXT_TEXTS = {
    "下一页", "下页", "下一頁", "下頁", "次へ", "次のページ", "次ページ", "next", "next page", "next »", "›", "»",
}  # fmt: skip
MIN_SLUG_WORDS = 3
MIN_ID_DIGITS = 5


def selector_for(css: str) -> CSSSelector:
    """The compiled CSS selector of a listing.

    Raises:
        SelectorError: not a CSS selector.
    """
    return CSSSelector(css, translator="html")


def parse_listing(
    feed: Feed, body: bytes, url: str | None = None, headers: Mapping[str, str] | None = None
) -> ParsedFeed:
    """The article links of a listing page as entries, each dated from its line of the listing if it shows one."""
    lower = {k.lower(): v for k, v in (headers or {}).items()}
    html, charset = decode_html(body, lower.get("content-type", ""))
    base = url or feed.url
    collected = EntryCollector(feed, feed.language)
    root = _document(html)
    if root is None:
        return ParsedFeed("", [], 0, None, charset, feed.language)
    for link in _article_links(root, base, feed.listing):
        collected.add(link.href, link.title, datetime(*link.day, tzinfo=collected.zone) if link.day else None)
    following = next_page(root, base) if feed.listing.max_pages > 1 else None
    return ParsedFeed("", collected.entries, collected.without_link, None, charset, feed.language, (), following)


def next_page(root: lxml.html.HtmlElement, base_url: str) -> str | None:
    """The page after this one: `rel="next"`, else the pager's link named "next page" (下一页, 次へ …)."""
    base = _document_base(root, base_url)
    for node in root.iter("link", "a"):
        if "next" in (node.get("rel") or "").lower().split() and node.get("href"):
            return urljoin(base, node.get("href").strip())
    for anchor in root.iter("a"):
        if anchor.get("href") and " ".join(anchor.text_content().split()).lower() in _NEXT_TEXTS:
            return urljoin(base, anchor.get("href").strip())
    return None


def _document(html: str) -> lxml.html.HtmlElement | None:
    try:
        return lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return None


@dataclass(frozen=True)
class ListedLink:
    """One article link of a listing: where it goes, its text, and the day printed beside it."""

    url: str  # canonical
    href: str  # as the page gave it, made absolute
    title: str
    day: tuple[int, int, int] | None


def article_links(html: str, base_url: str, rules: ListingRules | None = None) -> list[ListedLink]:
    """Article links of a page in page order, one per canonical URL (see the module docstring)."""
    root = _document(html)
    return [] if root is None else _article_links(root, base_url, rules)


def _article_links(root: lxml.html.HtmlElement, base_url: str, rules: ListingRules | None) -> list[ListedLink]:
    base = _document_base(root, base_url)
    try:
        listing_url = canonical_url(base_url)
    except UrlError:
        listing_url = base_url
    rules = rules or ListingRules()
    pattern = re.compile(rules.url_pattern) if rules.url_pattern else None
    anchors = _anchors(root, rules.selector)
    found: dict[str, ListedLink] = {}
    for anchor in anchors:
        href = urljoin(base, (anchor.get("href") or "").strip())
        try:
            url = canonical_url(href)
        except UrlError:
            continue
        if url == listing_url or url in found:
            continue
        if not rules.selector and _in_chrome(anchor):
            continue
        if pattern is not None:
            if not pattern.search(href):
                continue
        elif not same_site(url, listing_url) or not _article_shaped(url):
            continue
        title = _title(anchor)
        if not _headline_like(title):
            continue
        found[url] = ListedLink(url, href, title, _day_beside(anchor))
    return list(found.values())


def same_site(url: str, other: str) -> bool:
    """One registered domain (news.163.com and www.163.com; www.mofcom.gov.cn and fec.mofcom.gov.cn)."""
    first, second = get_fld(url, fail_silently=True), get_fld(other, fail_silently=True)
    if first and second:
        return bool(first == second)
    return urlsplit(url).hostname == urlsplit(other).hostname  # an address, or a name outside the suffix list


def _document_base(root: lxml.html.HtmlElement, url: str) -> str:
    base = root.find(".//base[@href]")
    return urljoin(url, base.get("href")) if base is not None else url


def _anchors(root: lxml.html.HtmlElement, selector: str) -> Iterator[lxml.html.HtmlElement]:
    if not selector:
        yield from root.iter("a")
        return
    for container in selector_for(selector)(root):
        yield from ([container] if container.tag == "a" else container.iter("a"))


def _in_chrome(anchor: lxml.html.HtmlElement) -> bool:
    for node in anchor.iterancestors():
        if node.tag in _CHROME_TAGS or (node.get("role") or "").lower() in _CHROME_ROLES:
            return True
        names = f"{node.get('class') or ''} {node.get('id') or ''}"
        tokens = {t.lower() for t in _TOKEN_SPLIT.split(_CAMEL.sub(" ", names)) if t}
        if tokens & _CHROME_TOKENS:
            return True
    return False


def _article_shaped(url: str) -> bool:
    """A date or an id in the path, or a long slug; not a section, topic, index or page-N URL."""
    if courlan.is_navigation_page(url) or courlan.is_not_crawlable(url):
        return False
    parts = urlsplit(url)
    if any(k.lower() in _PAGINATION_PARAMS for k, _ in parse_qsl(parts.query)):
        return False
    segments = [s for s in parts.path.split("/") if s]
    if not segments:
        return False
    if any(s.lower() in _SECTION_SEGMENTS for s in segments):
        return False
    last = segments[-1]
    if _PAGINATION_FILE.match(last) or _INDEX_FILE.match(last):
        return False
    # An id in the query counts only as a value of its own (?id=12345), not inside a token or a name.
    query_ids = [v for _, v in parse_qsl(parts.query) if v.isdigit()]
    digits = sum(c.isdigit() for c in parts.path + "".join(query_ids))
    slug_words = len([w for w in re.split(r"[-_]", _PAGE_SUFFIX.sub("", last)) if w.isalpha()])
    return digits >= MIN_ID_DIGITS or slug_words >= MIN_SLUG_WORDS


def _title(anchor: lxml.html.HtmlElement) -> str:
    text = " ".join(anchor.text_content().split())
    offered = " ".join((anchor.get("title") or "").split())
    # Lists cut long headlines ("…"); the title attribute often holds the whole one.
    return offered if len(offered) > len(text) else text


def _headline_like(title: str) -> bool:
    if _DATE.fullmatch(title.strip()):
        return False
    if _CJK.search(title):
        return len(_CJK.findall(title)) >= 4
    return len(title.split()) >= 3


def _day_beside(anchor: lxml.html.HtmlElement) -> tuple[int, int, int] | None:
    """The date printed in the link's own line of the list (its row, item or paragraph)."""
    for depth, node in enumerate([anchor, *anchor.iterancestors()]):
        if depth > 3 or node.tag in ("ul", "ol", "table", "tbody", "body"):
            return None
        if node is not anchor and node.tag not in _DATE_CONTAINERS:
            continue
        text = node.text_content()
        if len(text) > 400:  # a container of several items: its dates are theirs
            return None
        match = _DATE.search(text)
        if match:
            year, month, day = (int(g) for g in match.groups())
            if 1 <= month <= 12 and 1 <= day <= 31:
                return year, month, day
    return None
