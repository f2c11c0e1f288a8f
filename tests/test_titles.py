"""Clean titles on real pages: the site's name (and channel) stripped, the full title kept."""

from __future__ import annotations

import pytest

from pipeline.extract import extract
from pipeline.titles import clean_title
from tests.datepages import chinese_pages

# Real <title>s of the pages in tests/data/pages/zh-dates, and the headline each page shows.
EXPECTED = {
    "163-9.html": "5月20日至31日，京沪高速无锡至江阴大桥至广陵枢纽段封闭！",
    "hexun-1.html": "交通运输部：着力打造京津冀区域综合立体交通网络",
    "people-1.html": "女儿出嫁，郑板桥画了几笔兰花当嫁妆",
    "qq-2.html": "棱镜|数据业大整顿：爬虫与现金贷共生共荣，用户信息几元不等",
    "thepaper-3.html": "新年伊始，习近平的重要文章谈了啥？",
    "xinhuanet-1.html": "法国全国大罢工再次严重影响交通",
    "gamersky-gamersky.html": "逆水寒再按照这个速度研发下去 应该马上就要收到律师函了！",
    "shanxi-1.html": "山西品牌丝路行（南美站）正式启动",
    "csdn-1.html": "第三届知道安全论坛鸟巢举办 知道创宇发布新版ZoomEye",
}
URLS = {"csdn-1.html": "https://www.csdn.net/article/2014-08-24/2821356"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_site_names_are_stripped_from_real_titles(name: str) -> None:
    page = next(p for p in chinese_pages() if p.name == name)
    result = extract(page.html, URLS.get(name), "zh-Hans")
    assert result.title == EXPECTED[name]
    assert result.title_full.startswith(EXPECTED[name].split("|")[0]) and result.title_full != result.title


def test_every_real_page_keeps_a_non_empty_headline() -> None:
    for page in chinese_pages():
        result = extract(page.html, None, "zh-Hans")
        assert result.title or not result.title_full, page.name


@pytest.mark.parametrize(
    ("title", "names", "headline", "expected"),
    [
        ("Trump visits Walter Reed – BBC News", [], None, "Trump visits Walter Reed"),
        ("BBC News - Trump visits Walter Reed", ["BBC"], None, "Trump visits Walter Reed"),
        ("COVID-19 cases rise - Reuters", ["Reuters"], None, "COVID-19 cases rise"),
        ("日銀、追加利上げを決定 - 日本経済新聞", [], "日銀、追加利上げを決定", "日銀、追加利上げを決定"),
        ("Xi and Biden: what next", [], None, "Xi and Biden: what next"),
    ],
)
def test_titles_in_other_languages(title: str, names: list[str], headline: str | None, expected: str) -> None:
    assert clean_title(title, names, headline) == expected
