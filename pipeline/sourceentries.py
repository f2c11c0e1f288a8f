"""The entries of one source document, built alike whatever its kind (feed, sitemap, listing, JSON list).

Each parser hands over the links it read; this keeps one entry per canonical URL (the first),
counts the links that are not absolute http(s) instead of dropping them silently, and fills in
the source's name, language and time zone.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from pipeline.dates import zone_for
from pipeline.models import Feed, FeedEntry
from pipeline.urls import UrlError, canonical_url


def entry_zone(feed: Feed, language: str) -> tuple[ZoneInfo, str]:
    """The zone a date without one is read in, and the time zone recorded on entries.

    The recorded one is empty when neither feeds.yaml nor a known language names it.
    """
    zone = zone_for(language, feed.timezone or None)
    return zone, feed.timezone or (zone.key if language else "")


class EntryCollector:
    """Entries of one source document, one per canonical URL, in document order."""

    def __init__(self, feed: Feed, language: str) -> None:
        self.feed = feed
        self.language = language
        self.zone, self.timezone = entry_zone(feed, language)
        self._entries: dict[str, FeedEntry] = {}
        self.without_link = 0  # links that are not absolute http(s): counted on the feed's state

    def add(
        self,
        link: str,
        title: str = "",
        published: datetime | None = None,
        *,
        guid: str = "",
        summary: str = "",
        language: str | None = None,
        timezone: str | None = None,
        outlet: str = "",
        outlet_url: str = "",
    ) -> None:
        """One item's entry; `language` and `timezone` default to the document's, `guid` to the link."""
        try:
            url = canonical_url(link)
        except UrlError:
            self.without_link += 1
            return
        if url in self._entries:
            return
        self._entries[url] = FeedEntry(
            feed=self.feed.name,
            url=url,
            link=link,
            guid=guid or link,
            title=title,
            summary=summary,
            published=published,
            language=self.language if language is None else language,
            timezone=self.timezone if timezone is None else timezone,
            outlet=outlet,
            outlet_url=outlet_url,
        )

    @property
    def entries(self) -> list[FeedEntry]:
        return list(self._entries.values())
