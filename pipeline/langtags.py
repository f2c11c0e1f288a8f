"""BCP 47 language tags, as feeds and feeds.yaml write them, mapped to the languages the pipeline tags.

Feeds publish `zh-cn`, `zh-TW`, `zh-Hant-HK`, `ja-JP`, `en-us` …; the pipeline keeps one
tag per script it tags (zh-Hans, zh-Hant, ja, en), which also picks the default zone.
"""

from __future__ import annotations

from pipeline.dates import LANGUAGE_ZONES

# Regions whose Chinese is written in traditional characters.
_HANT_REGIONS = {"tw", "hk", "mo"}
# Chinese languages and macrolanguage members that feeds tag themselves with.
_CHINESE = {"zh", "cmn", "yue", "wuu", "hak", "nan"}


def canonical_language(tag: str) -> str | None:
    """The pipeline's language for a BCP 47 tag, or None if it is not one the pipeline tags."""
    parts = [p for p in tag.strip().replace("_", "-").lower().split("-") if p]
    if not parts:
        return None
    primary, subtags = parts[0], parts[1:]
    if primary in _CHINESE:
        if "hant" in subtags:
            return "zh-Hant"
        if "hans" in subtags:
            return "zh-Hans"
        traditional = primary == "yue" or any(s in _HANT_REGIONS for s in subtags)
        return "zh-Hant" if traditional else "zh-Hans"
    return primary if primary in LANGUAGE_ZONES else None
