"""Headlines without the site's name: "…_网易新闻", "… - 日本経済新聞", "BBC News - …" stripped.

The name is recognised, not guessed: it is the page's `og:site_name`, part of its
domain ("-CSDN.NET" on csdn.net), a name in the form sites give themselves
("…网", "…新闻", "… News"), or what the page's own <h1> headline leaves over.
After a site name, the channel before it ("_财经_腾讯网") goes too.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# Separators between headline and name; "-" needs spaces here ("COVID-19" is one word).
_SEPARATORS = re.compile(r"\s+[-–—|:·•]\s+|\s*(?:[_｜|–—]|-{2,})\s*")
_SITE_FORM = re.compile(
    r"(网|網|网站|網站|频道|頻道|新闻|新聞|日报|日報|晚报|订阅|News|Times|Post|Online)$|新闻|新聞", re.I
)
_GENERIC_LABELS = {"www", "com", "net", "org", "cn", "jp", "tw", "hk", "co", "news", "m", "wap", "en", "edu", "gov"}
MAX_SITE_NAME = 40  # characters: longer remainders are part of the headline
MAX_CHANNEL = 4  # characters of a channel name ("财经", "国内新闻") left before a site name


def clean_title(title: str, site_names: list[str], headline: str | None = None, url: str | None = None) -> str:
    """The headline of `title` with a leading or trailing site name (and channel) removed.

    Args:
        title: the page's <title> or og:title.
        site_names: names the site goes by (og:site_name, the feed's title).
        headline: the page's <h1>, if any.
        url: the page's address (its domain names the site too).
    """
    title = " ".join(title.split())
    names = {_norm(n) for n in site_names if n and n.strip()}
    host = urlsplit(url or "").hostname or ""
    labels = {p for p in host.lower().split(".") if len(p) >= 3 and p not in _GENERIC_LABELS}
    parts = _SEPARATORS.split(title)
    seps = _SEPARATORS.findall(title)
    # An unspaced "-" before a site name or channel ("…ZoomEye-CSDN.NET", "…网络-股票频道-和讯网").
    piece, tails = parts.pop(), list[str]()
    while True:
        head, dash, tail = piece.rpartition("-")
        if not (dash and head and _is_site(tail, names, labels)):
            break
        tails.insert(0, tail)
        piece = head.rstrip("-")
    parts += [piece, *tails]
    seps += ["-"] * len(tails)
    if len(parts) < 2:
        return title
    start, end = 0, len(parts)
    while end - start > 1 and (
        _is_site(parts[end - 1], names, labels) or _leaves_headline(parts[start : end - 1], seps[start:], headline)
    ):
        end -= 1
    if end < len(parts):
        while end - start > 1 and len(parts[end - 1]) <= MAX_CHANNEL and _CJK.search(parts[end - 1]):
            end -= 1
    while end - start > 1 and (
        _is_site(parts[start], names, labels) or _leaves_headline(parts[start + 1 : end], seps[start + 1 :], headline)
    ):
        start += 1
    return _join(parts[start:end], seps[start : end - 1]) if (start, end) != (0, len(parts)) else title


_CJK = re.compile(r"[\u4e00-\u9fff\u3040-\u30ff]")


def _is_site(piece: str, names: set[str], labels: set[str]) -> bool:
    norm = _norm(piece)
    if not norm or len(piece) > MAX_SITE_NAME:
        return False
    if any(norm == n or (len(n) >= 2 and (n in norm or norm in n)) for n in names):
        return True
    if any(label in norm for label in labels):
        return True
    return len(piece) <= 16 and bool(_SITE_FORM.search(piece.strip()))


def _leaves_headline(rest: list[str], seps: list[str], headline: str | None) -> bool:
    """What is left once the piece goes is exactly the page's own headline."""
    return bool(headline) and bool(rest) and _norm(_join(rest, seps)) == _norm(headline or "")


def _join(parts: list[str], seps: list[str]) -> str:
    out = parts[0]
    for sep, part in zip(seps, parts[1:], strict=False):
        out += sep + part
    return out.strip()


def _norm(text: str) -> str:
    return re.sub(r"\W+", "", text).lower()
