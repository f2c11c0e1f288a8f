"""URL canonicalisation and the private-address guard."""

from __future__ import annotations

import ipaddress
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

# Query parameters that track the click, not the article (utm_*, ad click ids, share sources).
_TRACKING_PREFIXES = ("utm_", "mc_", "pk_", "hmsr", "ga_", "__twitter")
_TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "msclkid",
        "yclid",
        "igshid",
        "mkt_tok",
        "spm",
        "share_token",
        "ref",
        "ref_src",
        "ref_url",
        "from",
        "cmpid",
        "ocid",
        "smid",
        "s_cid",
        "at_medium",
        "at_campaign",
        "sr_share",
    }
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


class UrlError(ValueError):
    """Not an http(s) URL we can fetch."""


def canonical_url(url: str) -> str:
    """One spelling per article: lower-case host, no default port, no fragment, no trackers.

    Raises:
        UrlError: the URL is not absolute http(s).
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:  # e.g. an unbalanced "[" in the host
        raise UrlError(f"not a URL: {url[:200]!r} ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise UrlError(f"not an absolute http(s) URL: {url[:200]!r}")
    host = parts.hostname.lower().rstrip(".")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise UrlError(f"bad host name in {url[:200]!r}") from exc
    try:
        port = parts.port
    except ValueError as exc:
        raise UrlError(f"bad port in {url[:200]!r}") from exc
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = quote(unquote(parts.path), safe="/%:@!$&'()*+,;=-._~") or "/"
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in _TRACKING_PARAMS and not k.lower().startswith(_TRACKING_PREFIXES)
    ]
    return urlunsplit((scheme, netloc, path, urlencode(sorted(query)), ""))


def is_public_address(address: str) -> bool:
    """False for loopback, private, link-local, multicast, reserved and unspecified addresses."""
    ip = ipaddress.ip_address(address.split("%", maxsplit=1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast
