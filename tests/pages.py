"""Feed and article documents the loopback server serves, and helpers to run and read the pipeline."""

from __future__ import annotations

from html import escape
from pathlib import Path

from elasticsearch import Elasticsearch
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.clutter import clean_plain_text
from pipeline.config import PROJECT_ROOT
from pipeline.es import Indices

SEEDS = PROJECT_ROOT / "seeds"

# A relevant story (export controls, Japan and China), in plain words.
EXPORT_CONTROL_PARAGRAPHS = [
    "1月6日,中国商务部发布公告,宣布加强对日本两用物项的出口管制,禁止所有两用物项对日本军事用户出口。",
    "公告涉及稀土、镓、锗等关键材料。日本对中国重稀土的依赖程度几乎是百分之百,日本企业担心供应链中断。",
    "日本首相高市早苗表示将寻求与美国合作,防卫大臣小泉进次郎计划访问华盛顿,与美国防长赫格塞思会晤。",
    "分析人士认为,中方的出口管制精准打击了日本军工和高端制造业,东京股市多家车企股价下跌。",
    "日本政府同时宣布启动南鸟岛深海稀土试采项目,但专家指出,商业化开采至少还需要十年时间。",
]
UNRELATED_PARAGRAPHS = [
    "本周末全市将迎来一次明显降温过程,最低气温将降至零下五度,气象部门提醒市民注意防寒保暖。",
    "受冷空气影响,北部山区可能出现降雪,部分高速公路将采取临时交通管制措施,请司机朋友提前规划路线。",
    "气象专家表示,今年冬季整体气温偏低,供暖部门已经提前做好准备,确保居民家中温暖过冬。",
    "市民在出行时应注意添加衣物,老人和儿童尽量减少户外活动,谨防感冒和心脑血管疾病。",
]


def seed_paragraphs(stem: str) -> list[str]:
    text = (SEEDS / f"{stem}.txt").read_text(encoding="utf-8")
    return clean_plain_text(text).split("\n\n")


def article_html(
    title: str,
    paragraphs: list[str],
    *,
    charset: str = "utf-8",
    published: str | None = None,
    meta_charset: bool = True,
) -> str:
    head = f'<meta charset="{charset}">' if meta_charset else ""
    if published:
        head += f'<meta property="article:published_time" content="{published}">'
    body = "\n".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    return (
        f"<!DOCTYPE html><html><head>{head}<title>{escape(title)}</title></head><body>"
        '<nav><a href="/">首页</a> <a href="/world">国际</a> <a href="/finance">财经</a></nav>'
        f"<article><h1>{escape(title)}</h1>{body}</article>"
        "<footer>版权所有 2026 示例新闻网</footer></body></html>"
    )


def rss(title: str, items: list[dict[str, str]]) -> str:
    parts = []
    for item in items:
        parts.append(
            "<item>"
            f"<title>{escape(item['title'])}</title><link>{escape(item['link'])}</link>"
            f"<guid>{escape(item.get('guid', item['link']))}</guid>"
            f"<description>{escape(item.get('summary', ''))}</description>"
            + (f"<pubDate>{item['pubDate']}</pubDate>" if item.get("pubDate") else "")
            + "</item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>http://example.org/</link><description>test</description>"
        + "".join(parts)
        + "</channel></rss>"
    )


def write_feeds(config_dir: Path, feeds: list[tuple[str, str, str]]) -> None:
    """Replace the config's feeds.yaml with (name, url, language) entries, polled on every run."""
    lines = ["feeds:"]
    for name, url, language in feeds:
        lines += [f"  - name: {name}", f"    url: {url}", f"    language: {language}", "    interval_minutes: 0"]
    (config_dir / "feeds.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_once() -> str:
    """`newsmon run --once` in-process; asserts it succeeded and returns its output."""
    result = CliRunner().invoke(app, ["run", "--once"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def feed_docs(es: Elasticsearch, indices: Indices) -> dict[str, dict]:
    """Indexed feed articles by URL (seeds left out)."""
    es.indices.refresh(index=indices.articles)
    hits = es.search(index=indices.articles, size=500, query={"term": {"source.kind": "feed"}})["hits"]["hits"]
    return {h["_source"]["url"]: h["_source"] for h in hits}
