"""Remove page clutter from plain text captured from news pages.

The seeds (and any plain-text input to `newsmon inspect`) carry what the page
around the article showed: image placeholders, share buttons, reading counters,
the platform disclaimer and lists of unrelated trending headlines after it.
"""

from __future__ import annotations

import re

# Everything from the first of these lines on is page furniture, not article.
_TRAILER = re.compile(
    r"^\s*(特别声明|特別聲明|Notice: The content above|相关推荐|相關推薦|热点推荐|熱點推薦"
    r"|猜你喜欢|猜你喜歡|往期回顾|往期回顧|\d+\s*阅读[:：]\s*\d+|\d+\s*閱讀[:：]\s*\d+)"
)
# Single lines that are never article text.
_NOISE_LINE = re.compile(
    r"^\s*(!\[[^\]]*\]\([^)]*\)|\d+|分享至|申请入驻|申請入駐|.*\s>\s.*正文.*"
    r"|[^\s]{1,20}\s+\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?)\s*$"
)
_INLINE_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_PARAGRAPH_GAP = re.compile(r"[ \u3000]{3,}")


def clean_plain_text(text: str, title: str | None = None) -> str:
    """Article text only: trailers cut, noise lines and previews dropped.

    A line that is a truncated preview of a later paragraph (the first line of
    some captures) is dropped too, as is a line repeating the title.
    """
    lines: list[str] = []
    for raw in text.splitlines():
        if _TRAILER.match(raw):
            break
        # Some captures run paragraphs together, separated by runs of spaces.
        for part in _PARAGRAPH_GAP.split(_INLINE_IMAGE.sub("", raw)):
            line = part.strip()
            if not line or _NOISE_LINE.match(line) or (title and line == title.strip()):
                continue
            lines.append(line)
    kept = [
        line
        for i, line in enumerate(lines)
        if not any(later.startswith(line) and later != line for later in lines[i + 1 :])
    ]
    return "\n\n".join(kept)
