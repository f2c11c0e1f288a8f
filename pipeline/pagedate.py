"""The publication date a page shows: its own metadata, the date line by the headline, then htmldate.

Chinese portals rarely use the meta names htmldate knows best; they print
"2019年11月25日 16:04:30 来源：…" or "发布时间：10-08 12:00" under the headline and put
the time in `og:time`, `apub:time` or JSON-LD `pubDate`. Those are read first. A page
with none of them goes to htmldate's extensive search, which is the stronger tool on
Western pages (`make bench --only dates` measures both).

A time without a zone is local to the site: the feed's zone if it has one, else the
zone of the page's language or top-level domain, flagged `zone_assumed`.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from itertools import accumulate
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from htmldate import find_date
from lxml import etree
from lxml.html import HtmlElement, tostring

from pipeline.dates import FUTURE_TOLERANCE, parse_date

# Zones of the sites we read, by the page's language tag and by top-level domain.
LANG_ZONES = {"zh-tw": "Asia/Taipei", "zh-hk": "Asia/Hong_Kong", "zh-hant": "Asia/Taipei", "zh": "Asia/Shanghai"}
LANG_ZONES |= {"ja": "Asia/Tokyo", "ko": "Asia/Seoul"}
CJK_ZONES = {"Asia/Shanghai", "Asia/Taipei", "Asia/Hong_Kong", "Asia/Tokyo", "Asia/Seoul"}
TLD_ZONES = {"cn": "Asia/Shanghai", "tw": "Asia/Taipei", "hk": "Asia/Hong_Kong", "jp": "Asia/Tokyo", "kr": "Asia/Seoul"}

META_NAMES = (
    "article:published_time",
    "og:published_time",
    "og:time",
    "apub:time",
    "firstpublishedtime",
    "publishdate",
    "publish_date",
    "publish-date",
    "pubdate",
    "pubtime",
    "publishtime",
    "datepublished",
    "og:release_date",
    "dc.date.issued",
    "dc.date",
    "dcterms.created",
    "sailthru.date",
    "parsely-pub-date",
    "date",
)
# Only to infer the year of a date line that leaves it out.
MODIFIED_NAMES = ("article:modified_time", "og:updated_time", "dateupdate", "lastmodifiedtime", "last-modified")
LD_KEYS = ("datePublished", "pubDate", "dateCreated")
# A date line names itself: 发布时间 / 发布日期 / 发表于 / 时间： (zh), 公開日 / 配信日 (ja).
_LABEL = (
    r"(?:(?:发布时间|發布時間|发布日期|發布日期|发表于|發表於|公開日|配信日|投稿日)\s*[：:]?"
    r"|(?<![\u4e00-\u9fff])(?:时间|時間|日期)\s*[：:])\s*"  # bare 时间 only as a label: not 午餐时间
)
_TIME = r"(?:\s*(?P<H>[01]?\d|2[0-3])\s*[:：時时]\s*(?P<M>[0-5]\d)(?:\s*[:：分]\s*(?P<S>[0-5]\d))?)?"
_FULL = re.compile(
    r"(?<!\d)(?P<y>(?:19|20)\d{2})\s*[年/\-.]\s*(?P<m>1[0-2]|0?[1-9])\s*[月/\-.]\s*(?P<d>3[01]|[12]\d|0?[1-9])(?!\d{2}:)\s*日?"
    + _TIME
)
# "发布时间：18-03-08", "发布时间：10-08 12:00", "10月08日": the year is left out and inferred.
_SHORT = re.compile(
    _LABEL + r"(?:(?P<y>\d{2})-)?(?P<m>1[0-2]|0?[1-9])\s*[-月]\s*(?P<d>3[01]|[12]\d|0?[1-9])(?!\d)\s*日?" + _TIME
)
_LABELLED_FULL = re.compile(_LABEL + _FULL.pattern)
_CDATA = re.compile(r"^\s*(?://\s*)?<!\[CDATA\[|(?://\s*)?\]\]>\s*$")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HAN = re.compile(r"[\u4e00-\u9fff]")
HEADLINE_WINDOW = 300  # characters of text after the headline where its date line sits
DATE_LINE_CHARS = 120  # longest text node read as a date line when its date shows no time
# Clause punctuation: a text node with any is prose or a photo caption, never a date line.
_CLAUSE = re.compile(r"[，。；！？]")
# Text outside scripts and outside links that say more than a date: a date inside a linked
# headline ("今日股市行情分析--2019年8月19日") belongs to another article.
_SHOWN = (
    "text()[not(ancestor::script) and not(ancestor::style) and not(ancestor::a["
    "string-length(translate(normalize-space(.), '0123456789年月日時时分-/:. ', '')) > 2])]"
)


class DateSource(StrEnum):
    HEADLINE = "headline"
    META = "meta"
    JSON_LD = "json_ld"
    TIME = "time"
    HTMLDATE = "htmldate"


@dataclass(frozen=True)
class PageDate:
    value: datetime  # aware
    source: DateSource
    has_time: bool  # False: the page shows the day only (value is local midnight)
    zone_assumed: bool  # the page gave no zone; the site's was applied


@dataclass(frozen=True)
class _Found:
    naive: datetime
    has_time: bool
    zone: str | None  # the offset or zone the page gave, if any
    source: DateSource


def site_zone(tree: HtmlElement, url: str | None) -> str | None:
    """The zone of the page's language tag or top-level domain, if it is one we know."""
    lang = (tree.get("lang") or tree.get("xml:lang") or "").strip().lower()
    for prefix in sorted(LANG_ZONES, key=len, reverse=True):
        if lang == prefix or lang.startswith(prefix + "-"):
            return LANG_ZONES[prefix]
    host = urlsplit(url or "").hostname or ""
    if host and host.rsplit(".", 1)[-1] in TLD_ZONES:
        return TLD_ZONES[host.rsplit(".", 1)[-1]]
    # No tag and no telling domain: the title's script (kana is Japanese, Han alone Chinese).
    title = tree.findtext(".//title") or ""
    if _KANA.search(title):
        return "Asia/Tokyo"
    return "Asia/Shanghai" if len(_HAN.findall(title)) >= 4 else None


def page_date(tree: HtmlElement, url: str | None, zone: str | None, now: datetime) -> PageDate | None:
    """The page's publication date, or None.

    Args:
        tree: the parsed page (before any cleaning).
        url: its address (for htmldate's URL rule and the domain's zone).
        zone: the zone the feed gives for zone-less times; None to infer it from the page.
        now: the fetch time; later dates are ignored.
    """
    local = zone or site_zone(tree, url)
    found = _own_dates(tree, now)
    # htmldate is the stronger tool on other pages: its day wins, our candidates may add the time.
    if not found or local not in CJK_ZONES:
        guess = _htmldate(tree, url)
        if guess:
            same_day = [f for f in found if f.naive.date() == guess.naive.date()]
            shown = _time_on(tree, guess.naive)
            found = [guess, *same_day, *([shown] if shown else [])]
    best = next((f for f in found if f.has_time), None)
    first = found[0] if found else None
    if first is None:
        return None
    # A date-only first choice keeps the time another source shows for the same day.
    if not first.has_time and best and best.naive.date() == first.naive.date():
        first = _Found(best.naive, True, best.zone, first.source)
    return _zoned(first, local)


def _zoned(found: _Found, local: str | None) -> PageDate:
    if found.zone:
        value = parse_date(found.naive.isoformat() + found.zone, ZoneInfo("UTC"))
        if value:
            return PageDate(value, found.source, found.has_time, zone_assumed=False)
    return PageDate(
        found.naive.replace(tzinfo=ZoneInfo(local or "UTC")), found.source, found.has_time, zone_assumed=True
    )


def _own_dates(tree: HtmlElement, now: datetime) -> list[_Found]:
    """Candidates in order of trust: the headline's date line, meta tags, JSON-LD, <time>."""
    found: list[_Found] = []
    reference = now
    structured = [*_meta_dates(tree), *_ld_dates(tree), *_time_dates(tree)]
    for text, source in structured:
        value = _parse_structured(text, source)
        if value and _plausible(value.naive, now):
            found.append(value)
    if found:
        reference = found[0].naive
    else:
        modified = [_parse_structured(t, DateSource.META) for t, _ in _meta_dates(tree, MODIFIED_NAMES)]
        reference = next((m.naive for m in modified if m), now.replace(tzinfo=None))
    line = _headline_date(tree, reference)
    if line and _plausible(line.naive, now):
        found.insert(0, line)
    return found


def _plausible(value: datetime, now: datetime) -> bool:
    return value.year >= 1995 and value - now.replace(tzinfo=None) <= FUTURE_TOLERANCE + timedelta(hours=14)


def _meta_dates(tree: HtmlElement, names: tuple[str, ...] = META_NAMES) -> list[tuple[str, DateSource]]:
    metas: dict[str, str] = {}
    for meta in tree.iter("meta"):
        key = (meta.get("property") or meta.get("name") or meta.get("itemprop") or "").strip().lower()
        if key and meta.get("content") and key not in metas:
            metas[key] = meta.get("content", "").strip()
    return [(metas[k], DateSource.META) for k in names if metas.get(k)]


def _ld_dates(tree: HtmlElement) -> list[tuple[str, DateSource]]:
    out: list[tuple[str, DateSource]] = []
    for script in tree.xpath('//script[@type="application/ld+json"]/text()')[:5]:
        try:
            data = json.loads(_CDATA.sub("", script), strict=False)
        except ValueError:
            continue
        stack = [data]
        while stack and len(out) < 5:
            item = stack.pop(0)
            if isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, dict):
                out += [(str(item[k]), DateSource.JSON_LD) for k in LD_KEYS if isinstance(item.get(k), str)]
                stack.extend(v for k, v in item.items() if k == "@graph")
    return out


def _time_dates(tree: HtmlElement) -> list[tuple[str, DateSource]]:
    nodes = tree.xpath("//time[@datetime] | //*[@itemprop='datePublished'][@datetime]")[:1]
    return [(n.get("datetime"), DateSource.TIME) for n in nodes]


def _parse_structured(text: str, source: DateSource) -> _Found | None:
    text = text.strip()
    iso = re.match(r"^(\d{4}-\d{2}-\d{2})(?:[T\s](\d{1,2}:\d{2}(?::\d{2})?)(?:\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?$", text)
    if iso:
        day, clock, offset = iso.groups()
        try:
            naive = datetime.fromisoformat(f"{day}T{clock or '00:00'}".replace("T0:", "T00:"))
        except ValueError:
            return None
        return _Found(naive, clock is not None, _offset(offset), source)
    match = _FULL.search(text)
    if match:
        return _from_match(match, None, source)
    try:
        parsed = parsedate_to_datetime(text)  # RFC 822
    except (TypeError, ValueError, IndexError):
        return None
    return _Found(parsed.replace(tzinfo=None), True, _offset(parsed.strftime("%z")), source)


def _offset(text: str | None) -> str | None:
    """ "Z", "+0800" or "+08:00" as "+HH:MM"; None when there is none."""
    if not text:
        return None
    if text == "Z":
        return "+00:00"
    return text if ":" in text else text[:3] + ":" + text[3:]


def _headline_date(tree: HtmlElement, reference: datetime) -> _Found | None:
    """The date line printed next to the headline, else a labelled date line anywhere.

    A labelled line ("发布时间：…") beats an unlabelled date after the headline, which on a
    portal whose <h1> is the site name can be a neighbouring article's.
    """
    nodes: list[str] = []
    for h1 in tree.xpath("//h1")[:3]:
        if h1.text_content().strip():
            nodes = _nodes(_shown_texts(tree.getroottree().getroot(), 80, after=h1))
            break
    window = " ".join(nodes)[:HEADLINE_WINDOW]
    body = tree.find("body")
    text = _text(_shown_texts(body, 3000)) if body is not None else ""
    for pattern, where in ((_LABELLED_FULL, window), (_LABELLED_FULL, text)):
        match = pattern.search(where)
        if match:
            return _from_match(match, None, DateSource.HEADLINE)
    line = next((m for m in _FULL.finditer(window) if _is_date_line(m, nodes)), None)
    if line:
        return _from_match(line, None, DateSource.HEADLINE)
    short = _SHORT.search(window) or _SHORT.search(text)
    return _from_match(short, reference, DateSource.HEADLINE) if short else None


def _shown_texts(root: HtmlElement, limit: int, after: HtmlElement | None = None) -> list[str]:
    """The first `limit` text nodes under `root` outside scripts and styles (only those after
    `after`'s end, when given), in document order. A walk that stops at the limit: the XPath
    `following::text()` it replaces read every text node of the page first."""
    texts: list[str] = []
    hidden = 0  # open script and style elements
    started = after is None
    # Comments and processing instructions come as events of their own: their text is hidden, their tail
    # (often the date line, as in "<!-- time -->2026-01-06") is shown.
    for event, node in etree.iterwalk(root, events=("start", "end", "comment", "pi")):
        if event in ("comment", "pi"):
            if started and not hidden and node.tail is not None:
                texts.append(node.tail)
        elif event == "start":
            if node.tag in ("script", "style"):
                hidden += 1
            elif started and not hidden and node.text is not None:
                texts.append(node.text)
        else:
            if node.tag in ("script", "style"):
                hidden -= 1
            started = started or node is after
            if started and not hidden and node is not root and node.tail is not None:
                texts.append(node.tail)
        if len(texts) >= limit:
            break
    return texts[:limit]


def _text(parts: list[str]) -> str:
    return " ".join(" ".join(parts).split())


def _nodes(parts: list[str]) -> list[str]:
    """Text nodes with their whitespace collapsed, empty ones left out: joined by spaces, _text(parts)."""
    return [n for n in (" ".join(p.split()) for p in parts) if n]


def _is_date_line(match: re.Match[str], nodes: list[str]) -> bool:
    """An unlabelled date after the headline is its date line when it gives a time or stands
    in a short text of its own; a bare day inside a paragraph or a caption is what the text is
    about ("2026年1月6日,中国商务部正式发布…" in a commentary published later, "…收緊2025年4月4日
    列管的…", "2019年10月1日，日本橫濱中華街，一名男子…（Getty）")."""
    if match.group("H") is not None:
        return True
    ends = list(accumulate(len(n) + 1 for n in nodes))  # offset after each node and its separator
    at = bisect.bisect_right(ends, match.start())
    return at < len(nodes) and len(nodes[at]) <= DATE_LINE_CHARS and not _CLAUSE.search(nodes[at])


def _from_match(match: re.Match[str], reference: datetime | None, source: DateSource) -> _Found | None:
    g = match.groupdict()
    month, day = int(g["m"]), int(g["d"])
    if g.get("y") and len(g["y"]) == 4:
        years = [int(g["y"])]
    elif g.get("y"):
        years = [2000 + int(g["y"])]
    else:
        assert reference is not None
        # The year is left out: the latest one that does not put the date after the reference.
        years = [reference.year, reference.year - 1]
    for year in years:
        try:
            naive = datetime(year, month, day, int(g["H"] or 0), int(g["M"] or 0), int(g["S"] or 0))
        except ValueError:
            return None
        if reference is None or len(years) == 1 or naive <= reference.replace(tzinfo=None) + timedelta(days=1):
            return _Found(naive, g["H"] is not None, None, source)
    return None


def _time_on(tree: HtmlElement, day: datetime) -> _Found | None:
    """The first date with a time in the page's text that falls on `day` (its shown time)."""
    body = tree.find("body")
    if body is None:
        return None
    text = " ".join(" ".join(body.xpath(".//" + _SHOWN)[:3000]).split())
    for match in _FULL.finditer(text):
        found = _from_match(match, None, DateSource.HEADLINE)
        if found and found.has_time and found.naive.date() == day.date():
            return found
    return None


def _htmldate(tree: HtmlElement, url: str | None) -> _Found | None:
    day = find_date(tree, url=url, extensive_search=True, original_date=True, outputformat="%Y-%m-%d")
    if not day or (day.endswith("-01-01") and not _shows_new_year(tree, url, day[:4])):
        return None
    return _Found(datetime.fromisoformat(day), False, None, DateSource.HTMLDATE)


def _shows_new_year(tree: HtmlElement, url: str | None, year: str) -> bool:
    """Whether the page or its URL shows 1 January of `year` as a date.

    htmldate's last resort turns a copyright line ("© 2026") into 1 January of that
    year; a page published on New Year's Day shows the day itself somewhere.
    """
    text = f"{url or ''} {tostring(tree, encoding='unicode')}"
    day = rf"{year}(?:\s*[年/\-.]\s*0?1\s*[月/\-.]\s*0?1|0101)(?!\d)|\b(?:Jan\w*\.? 1,? {year}|1 Jan\w* {year})\b"
    return re.search(day, text, re.IGNORECASE) is not None
