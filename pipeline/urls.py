"""URL canonicalisation and the private-address guard."""

from __future__ import annotations

import ipaddress
import re
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


# IPv6 prefixes that carry or reach an IPv4 address (so any IPv4 target, loopback included):
# NAT64 (RFC 6052, RFC 8215), 6to4 (RFC 3056), Teredo (RFC 4380), IPv4-mapped and -compatible.
_TUNNELS = tuple(
    ipaddress.ip_network(n)
    for n in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32", "::ffff:0:0/96", "::/96")
)
# An IPv4 address spelled as one number or with octal/hex parts (2130706433, 0177.0.0.1, 0x7f.1):
# resolvers accept them, so a check of the text alone is fooled.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|\d+)(\.(0x[0-9a-f]*|\d+)){0,3}\.?$", re.IGNORECASE)


def odd_ipv4_spelling(host: str) -> bool:
    """True for a host that is an IPv4 address in any spelling but the plain dotted quad."""
    if not _NUMERIC_HOST.match(host):
        return False
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return True
    return False


def is_public_address(address: str) -> bool:
    """False for loopback, private, link-local, multicast, reserved, unspecified and tunnelled addresses."""
    ip = ipaddress.ip_address(address.split("%", maxsplit=1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and any(ip in net for net in _TUNNELS):
        return False
    return ip.is_global and not ip.is_multicast
