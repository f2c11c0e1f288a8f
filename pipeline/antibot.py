"""Anti-bot challenges told apart from real answers.

Some official sites (China's customs among them) answer every client that runs no
JavaScript with a small page whose script computes a cookie and reloads. That is
reported as what it is, `anti_bot_challenge`, so ops see why the source yields
nothing; newsmon never runs the script or forges the cookie to get past it.
"""

from __future__ import annotations

import re

MAX_CHALLENGE_BYTES = 64_000  # a challenge page is small; a real page mentioning cookies is not judged
# Known challenge frameworks, by the marks their pages carry.
_FRAMEWORKS = [
    (re.compile(rb"\$_ts\s*=|\$_ts\[|FSSBBIl1UgzbN7N", re.IGNORECASE), "a JavaScript cookie challenge (Rivers/Ruishu)"),
    (re.compile(rb"cf[-_]chl|challenge-platform|cf-browser-verification"), "a Cloudflare browser challenge"),
    (re.compile(rb"acw_sc__v2|_waf_bd8ce2ce37|aliyun_waf", re.IGNORECASE), "an Alibaba Cloud WAF challenge"),
]
_COOKIE_SCRIPT = re.compile(rb"document\.cookie\s*=", re.IGNORECASE)
_RELOAD = re.compile(rb"location\.(reload|replace|href)|window\.location\s*=", re.IGNORECASE)
_LINK = re.compile(rb"<a\s[^>]*href", re.IGNORECASE)


def challenge_reason(status_code: int, body: bytes) -> str | None:
    """Why this answer is an anti-bot challenge rather than the document, or None."""
    if len(body) > MAX_CHALLENGE_BYTES or not body:
        return None
    for mark, name in _FRAMEWORKS:
        if mark.search(body):
            return f"the site answers (HTTP {status_code}) with {name} instead of the page; newsmon does not run it"
    if _COOKIE_SCRIPT.search(body) and _RELOAD.search(body) and not _LINK.search(body):
        return (
            f"the site answers (HTTP {status_code}) with a script that sets a cookie and reloads"
            " (an anti-bot challenge) instead of the page; newsmon does not run it"
        )
    return None
