"""feeds.yaml as users write it: BCP 47 language tags, the language left out, the poll interval left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, Settings
from pipeline.feeds import load_feeds, parse_feed
from pipeline.models import Feed

CORPUS = Path(__file__).parent / "data" / "feeds" / "feedparser"
LINKED = b"<item><title>t</title><link>http://example.com/a</link></item></channel>"


def _load(tmp_path: Path, entry: str, default: int = 30) -> list[Feed]:
    path = tmp_path / "feeds.yaml"
    path.write_text(f"feeds:\n  - name: f\n    url: https://example.com/feed.xml\n{entry}", encoding="utf-8")
    return load_feeds(path, default)


@pytest.mark.parametrize(
    ("tag", "language", "zone"),
    [
        ("zh", "zh-Hans", "Asia/Shanghai"),
        ("zh-CN", "zh-Hans", "Asia/Shanghai"),
        ("zh-cn", "zh-Hans", "Asia/Shanghai"),
        ("zh-TW", "zh-Hant", "Asia/Taipei"),
        ("zh-Hant-HK", "zh-Hant", "Asia/Taipei"),
        ("zh-Hans", "zh-Hans", "Asia/Shanghai"),
        ("ja-JP", "ja", "Asia/Tokyo"),
        ("en-US", "en", "UTC"),
    ],
)
def test_bcp47_tags_are_mapped(tmp_path: Path, tag: str, language: str, zone: str) -> None:
    [feed] = _load(tmp_path, f"    language: {tag}\n")
    assert (feed.language, feed.timezone) == (language, zone)


def test_an_untagged_language_is_refused_naming_the_feed_and_tag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"feeds\[0\] \(f\): language 'fr' .*zh-CN"):
        _load(tmp_path, "    language: fr\n")


def test_interval_left_out_is_the_pipelines_default_not_zero(tmp_path: Path) -> None:
    [feed] = _load(tmp_path, "    language: zh\n", Settings().feed_interval_minutes)
    assert feed.interval_minutes == Settings().feed_interval_minutes > 0
    [feed] = _load(tmp_path, "    interval_minutes: 15\n")
    assert feed.interval_minutes == 15
    with pytest.raises(ConfigError, match=r"\(f\): interval_minutes must be 0 \(every run\) or more"):
        _load(tmp_path, "    interval_minutes: -5\n")


@pytest.mark.parametrize(
    ("rel", "headers", "language"),
    [
        ("wellformed/lang/channel_language.xml", {}, "en"),  # <language>en-us</language>
        ("wellformed/lang/channel_dc_language.xml", {}, "en"),
        ("wellformed/lang/http_content_language.xml", {"Content-Language": "en"}, "en"),
        ("wellformed/lang/http_content_language_feed_language.xml", {"Content-Language": "en"}, ""),  # fr: detect
    ],
)
def test_language_left_out_comes_from_the_feed(
    tmp_path: Path, rel: str, headers: dict[str, str], language: str
) -> None:
    [feed] = _load(tmp_path, "")
    assert (feed.language, feed.timezone) == ("", "")
    assert parse_feed(feed, (CORPUS / rel).read_bytes(), headers=headers).language == language


def test_a_chinese_feed_without_language_in_feeds_yaml_dates_its_entries_in_its_zone(tmp_path: Path) -> None:
    [feed] = _load(tmp_path, "")
    body = (CORPUS / "illformed" / "chardet" / "gb2312.xml").read_bytes().replace(b"</channel>", LINKED)
    parsed = parse_feed(feed, body, headers={"Content-Type": "text/xml; charset=gb2312", "Content-Language": "zh-CN"})
    assert parsed.language == "zh-Hans"
    assert {(e.language, e.timezone) for e in parsed.entries} == {("zh-Hans", "Asia/Shanghai")}
