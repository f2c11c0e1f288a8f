"""Property-based tests: arbitrary bytes and Unicode never crash or hang a stage.

Short in CI; `make fuzz` runs many more examples (NEWSMON_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import os
import time
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import PROJECT_ROOT
from pipeline.feeds import parse_feed
from pipeline.fetch import FetchError, decode_html
from pipeline.models import Feed
from pipeline.tag import Tagger
from pipeline.text import normalise, normalise_mapped
from pipeline.urls import UrlError, canonical_url
from pipeline.watchlist import load_watchlist
from tests import faults

EXAMPLES = int(os.environ.get("NEWSMON_FUZZ_EXAMPLES", "150"))
LIMIT_S = 5.0  # any single call taking longer than this counts as a hang
FEED = Feed("fuzz", "http://example.org/feed", "zh-Hans", 0, "Asia/Shanghai")
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,  # measured explicitly below, so a slow CI machine does not flake
    database=None,  # keep the example database out of the repository
    suppress_health_check=[HealthCheck.too_slow],
)


def bounded(call, *args, refusals=()):  # type: ignore[no-untyped-def]
    """One hostile input: an exception other than the `refusals` is a crash, a call over LIMIT_S a hang."""
    started = time.monotonic()
    with faults.trial(call.__name__, refusals=refusals):
        result = call(*args)
    elapsed = time.monotonic() - started
    if elapsed >= LIMIT_S:
        faults.tally.crash(call.__name__, f"hang: took {elapsed:.1f}s")
    assert elapsed < LIMIT_S, f"{call.__name__} took {elapsed:.1f}s"
    return result


FEED_XML = st.builds(
    lambda title, link, junk: (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>{title}</title>'
        f"<item><title>{title}</title><link>{link}</link></item>{junk}</channel></rss>"
    ).encode("utf-8", "surrogatepass"),
    st.text(max_size=200),
    st.text(max_size=200),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
)


@fuzz
@given(st.one_of(st.binary(max_size=4000), FEED_XML))
def test_feed_parsing_never_crashes(data: bytes) -> None:
    try:
        parsed = bounded(parse_feed, FEED, data, refusals=(FetchError,))
    except FetchError as exc:
        assert exc.reason == "xml_entity_bomb"
        return
    for entry in parsed.entries:
        assert entry.url == canonical_url(entry.url)


@fuzz
@given(st.one_of(st.text(max_size=300), st.builds(lambda s: "http://" + s, st.text(max_size=200))))
def test_canonical_urls_are_stable_or_refused(url: str) -> None:
    try:
        once = bounded(canonical_url, url, refusals=(UrlError,))
    except UrlError:
        return
    assert canonical_url(once) == once
    assert "#" not in once
    assert not [k for k, _ in parse_qsl(urlsplit(once).query) if k.lower().startswith("utm_")]


@fuzz
@given(
    st.binary(max_size=6000), st.sampled_from(["", "text/html", "text/html; charset=gbk", "text/html; charset=nope"])
)
def test_charset_detection_always_yields_text(body: bytes, content_type: str) -> None:
    text, codec = bounded(decode_html, body, content_type)
    assert isinstance(text, str) and codec


@pytest.fixture(scope="module")
def tagger(tmp_path_factory: pytest.TempPathFactory) -> Tagger:
    config = PROJECT_ROOT / "config"
    return Tagger(load_watchlist(config / "watchlist.yaml"), config, tmp_path_factory.mktemp("cache"))


@fuzz
@given(st.text(max_size=500), st.text(max_size=3000))
def test_tagging_arbitrary_unicode(tagger: Tagger, title: str, body: str) -> None:
    tags = bounded(tagger.tag, title, body)
    assert tags.relevance.score >= 0
    assert all(count > 0 for count in tags.mentions.values())
    # Shown as the article writes them, or in the normalised form when that cannot be cut.
    text = f"{title}\n\n{body}"
    assert all(k in text or normalise(k) == k for k in tags.keywords)


@fuzz
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_normalised_offsets_point_into_the_original_in_order(text: str) -> None:
    # Snippets and evidence are cut from the original through this map: it must never
    # point outside the text or backwards.
    norm, offsets = bounded(normalise_mapped, text)
    assert len(offsets) == len(norm)
    assert list(offsets) == sorted(offsets)
    assert all(0 <= o < len(text) for o in offsets)
