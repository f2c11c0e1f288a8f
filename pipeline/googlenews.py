"""Google News items: the publisher's URL where Google gives it, else the outlet the item names.

Google News feeds link every item through news.google.com. A link that carries
the publisher's URL in its query (`…/url?url=https://…`) is unwrapped when the
feed is read, so the item is the publisher's article from the start and dedups
with the publisher's own copy. Other links are fetched as usual: a plain HTTP
redirect lands on the publisher's page; a link that stays on Google (its
`/rss/articles/` pages redirect by script) is not indexed as Google's page but
from the item's text, under the outlet of its `<source url="…">` and that
outlet's domain.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

GOOGLE_NEWS_HOSTS = frozenset({"news.google.com"})
_TARGET_PARAMS = ("url", "q")


def is_google_news(url: str | None) -> bool:
    return (urlsplit(url or "").hostname or "").lower() in GOOGLE_NEWS_HOSTS


def unwrapped(link: str) -> str:
    """The publisher's URL a Google News link carries in its query, else the link itself."""
    if not is_google_news(link):
        return link
    query = dict(parse_qsl(urlsplit(link).query))
    for name in _TARGET_PARAMS:
        target = query.get(name, "")
        if target.startswith(("http://", "https://")) and not is_google_news(target):
            return target
    return link


def outlet_domain(outlet_url: str) -> str | None:
    """The host of an item's `<source url>`, without `www.`: the domain its articles are filed under."""
    host = (urlsplit(outlet_url).hostname or "").lower()
    return host.removeprefix("www.") or None
