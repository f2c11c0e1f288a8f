"""Feed documents made readable and safe before feedparser sees them.

The bytes alone do not say which charset they are in (the HTTP header may be the
only declaration, or there may be none) nor where relative links point (the
response URL, or Content-Location). And a document must never expand entities
without bound, whatever its encoding.

Safety mechanism: every document with an entity declaration is first parsed by
libxml2 (lxml) with `resolve_entities="internal"`, `no_network`, no DTD loading
and `huge_tree` off. libxml2 then never opens an external entity (file or URL)
and stops with a resource-limit or entity-loop error when expansion outgrows
its amplification limit (libxml2 ≥ 2.11), so a harmless internal entity or a
reference to the XHTML entity sets passes and a "billion laughs" or quadratic
blow-up is refused. The check runs on the UTF-8 transcoding, so UTF-16 bombs
meet the same limit. feedparser itself then keeps only plain-text internal
entities (`replace_doctype`), and its expat parser reads no external entities.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from urllib.parse import urljoin

import charset_normalizer
from lxml import etree

from pipeline.fetch import WEAK_LABELS, codec_for

# Charsets a feed that declares none is likely to be in, besides UTF-8 (RFC 7303 §8.1 default).
DETECT_CANDIDATES = ["gb18030", "big5", "shift_jis", "euc_jp", "euc_kr", "cp1252"]
_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*?\bencoding\s*=\s*[\"']([\w.:\-]+)[\"']", re.IGNORECASE)
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:\-]+)", re.IGNORECASE)
# XML 1.0 appendix F: a UTF-16 document without BOM starts with "<?" in two bytes per character.
_UTF16_STARTS = {b"\x00<\x00?": "utf_16_be", b"<\x00?\x00": "utf_16_le"}
_BOMS = [(codecs.BOM_UTF8, "utf_8"), (codecs.BOM_UTF16_LE, "utf_16_le"), (codecs.BOM_UTF16_BE, "utf_16_be")]
_BOMBS = {etree.ErrorTypes.ERR_RESOURCE_LIMIT, etree.ErrorTypes.ERR_ENTITY_LOOP}


class EntityBomb(ValueError):
    """The document's entities expand beyond the parser's amplification limit."""


@dataclass(frozen=True)
class FeedDocument:
    """A feed ready for feedparser: UTF-8 bytes, the charset they came in, the base for links."""

    body: bytes
    charset: str
    base_url: str
    language: str | None

    @property
    def headers(self) -> dict[str, str]:
        """The response headers feedparser needs (it resolves links against content-location)."""
        headers = {"content-type": "application/xml; charset=utf-8", "content-location": self.base_url}
        if self.language:
            headers["content-language"] = self.language
        return headers


def prepare(body: bytes, url: str, headers: dict[str, str]) -> FeedDocument:
    """Transcode a feed to UTF-8 and check its entities.

    Args:
        body: the response body.
        url: the final response URL (after redirects).
        headers: the response headers, lower-case names.

    Returns:
        The document, with the base URL from Content-Location (relative to `url`) or `url`.

    Raises:
        EntityBomb: entity expansion exceeds libxml2's limits.
    """
    text, charset = decode(body, headers.get("content-type", ""))
    utf8 = _redeclare_utf8(text).encode("utf-8")
    check_entities(utf8)
    base = urljoin(url, headers["content-location"]) if headers.get("content-location") else url
    return FeedDocument(utf8, charset, base, headers.get("content-language"))


def decode(body: bytes, content_type: str) -> tuple[str, str]:
    """The feed as text and the codec used: BOM, HTTP charset, XML declaration, UTF-8, detection.

    RFC 7303 §3: a BOM wins, then the charset parameter, then the XML declaration. A
    declaration that does not decode the bytes is skipped rather than trusted.
    """
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(codec, "replace"), codec
    header, declared = _header_charset(content_type), _declared_charset(body)
    # Servers default to a Latin-1 label for every text/* file; a feed's own declaration knows better.
    order = [declared, header] if header in WEAK_LABELS and declared else [header, declared]
    for codec in [c for c in order if c] + ["utf_8"]:
        try:
            return body.decode(codec), codec
        except UnicodeDecodeError:
            continue
    guess = charset_normalizer.from_bytes(body[:200_000], cp_isolation=DETECT_CANDIDATES).best()
    guessed = (codec_for(guess.encoding) if guess else None) or "cp1252"
    return body.decode(guessed, "replace"), guessed


def check_entities(utf8: bytes) -> None:
    """Refuse a document whose entities expand without bound (see the module docstring)."""
    if b"<!ENTITY" not in utf8:
        return
    parser = etree.XMLParser(resolve_entities="internal", no_network=True, load_dtd=False, huge_tree=False)
    try:
        etree.fromstring(utf8, parser)
    except etree.XMLSyntaxError as exc:
        if exc.code in _BOMBS:
            raise EntityBomb(str(exc).split(",", maxsplit=1)[0]) from None
        # Any other fault (an undefined entity, a malformed feed) is feedparser's to report.


def _header_charset(content_type: str) -> str | None:
    match = _HEADER_CHARSET.search(content_type or "")
    return codec_for(match.group(1)) if match else None


def _declared_charset(body: bytes) -> str | None:
    for start, codec in _UTF16_STARTS.items():
        if body.startswith(start):
            return codec
    match = _XML_DECL.match(body[:1024])
    return codec_for(match.group(1).decode("ascii")) if match else None


def _redeclare_utf8(text: str) -> str:
    """The XML declaration rewritten to say UTF-8, which the text now is."""
    return re.sub(
        r"^(\s*<\?xml[^>]*?\bencoding\s*=\s*)([\"'])[\w.:\-]+\2", r"\1\2utf-8\2", text, count=1, flags=re.IGNORECASE
    )
