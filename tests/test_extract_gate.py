"""The quality gate on real pages: list, front and forum pages refused as list_page; articles and briefs kept."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from pipeline.extract import extract, is_list_page
from pipeline.fetch import decode_html
from pipeline.models import Extraction
from tests.datepages import chinese_pages
from tests.pages import article_html

LISTS = Path(__file__).parent / "data" / "pages" / "zh-lists"
ARTICLES = Path(__file__).parent / "data" / "articles"


@pytest.mark.parametrize("name", sorted(p.name for p in LISTS.glob("*.gz")))
def test_real_list_pages_are_refused(name: str) -> None:
    html = decode_html(gzip.decompress((LISTS / name).read_bytes()), "")[0]
    result = extract(html, None, "zh-Hans", fallback_title="首页")
    assert (result.status, result.reason) == (Extraction.FALLBACK, "list_page")


def test_real_chinese_articles_pass_the_gate() -> None:
    refused = [p.name for p in chinese_pages() if extract(p.html, None, "zh-Hans").reason == "list_page"]
    assert refused == []


def test_front_and_index_urls_are_list_pages_but_deep_index_files_are_articles() -> None:
    assert is_list_page("", set(), "https://www.163.com/")
    assert is_list_page("", set(), "https://news.163.com/domestic/index.html")
    assert not is_list_page("", set(), "https://edition.cnn.com/2019/11/18/politics/trump-walter-reed/index.html")
    assert not is_list_page("", set(), "https://www.bigbrandsystem.com/success-mindset/")


def test_a_one_paragraph_brief_keeps_its_body() -> None:
    # A real wire lead (China News Service), alone on its page as briefs are published.
    text = (ARTICLES / "zh-hans-asml-controls-expanded-chinanews-cppjump.txt").read_text(encoding="utf-8")
    lead = next(p for p in text.split("\n\n")[1:] if p.startswith("中新社"))
    result = extract(article_html("商务部回应荷兰扩大光刻机管制", [lead]), "https://example.cn/a/1.html", "zh-Hans")
    assert result.status is Extraction.OK and lead.strip()[:20] in result.body
