"""Tagging as users see it: seed labels, relevance, ids across scripts, retag, watchlist errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch
from typer.testing import CliRunner

from pipeline import index
from pipeline.cli import app
from pipeline.clutter import clean_plain_text
from pipeline.config import PROJECT_ROOT, Settings
from pipeline.document import VERSION_FIELDS, tag_fields
from pipeline.es import Indices
from pipeline.models import Tags
from pipeline.search import search
from pipeline.seeds import read_seeds
from pipeline.tag import Tagger, get_tagger
from pipeline.text import normalise
from pipeline.watchlist import load_watchlist
from tests.conftest import CONFIG_DIR, DATA
from tests.corpus import index_articles, load_articles

SEEDS_DIR = PROJECT_ROOT / "seeds"
FAULTS = Path(__file__).parent / "faultinject"
LABELS: dict[str, Any] = yaml.safe_load((DATA / "seed_labels.yaml").read_text(encoding="utf-8"))
MULTILINGUAL = DATA / "multilingual"
EXPECTED: dict[str, Any] = yaml.safe_load((MULTILINGUAL / "expected.yaml").read_text(encoding="utf-8"))
UNRELATED = sorted((DATA / "unrelated").glob("*.html"))
RULE = "export_control_japan_china"

S000, S001, S002, S003 = (
    "000_6a024b3a6c380766",
    "001_1ebeefc35d0a17ab",
    "002_ec1d4c06d4d6a313",
    "003_534769c048fecea1",
)
INSPECT_KEYS = {"source", "title", "entities", "keywords", "watch_terms", "relevance"}
RELEVANCE_KEYS = {"relevant", "score", "matched_rules", "matched_terms", "evidence"}

runner = CliRunner()


def newsmon(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def inspect_json(*files: Path) -> list[dict[str, Any]]:
    """`newsmon inspect --json`: one JSON object per line, one line per file."""
    output = newsmon("inspect", *map(str, files), "--json")
    results = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert [r["source"] for r in results] == [str(f) for f in files]
    for r in results:
        assert set(r) >= INSPECT_KEYS, r.keys()
        assert set(r["relevance"]) >= RELEVANCE_KEYS, r["relevance"].keys()
    return results


def tagged_seeds(settings: Settings) -> dict[str, Tags]:
    tagger = get_tagger(settings)
    return {a.id.removeprefix("seed-"): tagger.tag(a.title, a.body) for a in read_seeds()}


def raw_seed(stem: str) -> str:
    return (SEEDS_DIR / f"{stem}.txt").read_text(encoding="utf-8")


def stop_words(name: str) -> set[str]:
    lines = (PROJECT_ROOT / "config" / name).read_text(encoding="utf-8").splitlines()
    return {line.strip().lower() for line in lines if line.strip() and not line.startswith("#")}


# ---------------------------------------------------------------- seeds


def test_every_labelled_entity_of_each_seed_is_tagged_with_its_id(settings: Settings) -> None:
    entries = get_tagger(settings).watchlist.by_id()
    tags = tagged_seeds(settings)
    assert set(tags) == set(LABELS["seeds"])
    missing = {
        stem: sorted(i for i in ids if i not in tags[stem].entities.get(entries[i].type, []))
        for stem, ids in LABELS["seeds"].items()
    }
    assert missing == {stem: [] for stem in LABELS["seeds"]}


def test_both_chinese_spellings_of_hegseth_give_one_id(settings: Settings) -> None:
    tagger = get_tagger(settings)
    seeds = {a.id.removeprefix("seed-"): a for a in read_seeds()}
    tags = tagged_seeds(settings)
    for stem, spelling in ((S000, "海格赛斯"), (S003, "赫格塞思")):
        assert spelling in seeds[stem].body
        assert "hegseth" in tags[stem].entities["person"], stem
        alone = tagger.tag("", f"美国防长{spelling}会见日本防卫大臣")
        assert alone.entities["person"] == ["hegseth"]


def test_names_only_in_page_clutter_are_not_tagged(settings: Settings) -> None:
    tagger = get_tagger(settings)
    tags = tagged_seeds(settings)
    for stem, ids in LABELS["clutter_only"].items():
        # The names are in the captured file, so only clutter removal keeps them out.
        assert set(ids) <= set(tagger.tag("", raw_seed(stem)).mentions), stem
        assert sorted(set(ids) & set(tags[stem].mentions)) == [], stem


def test_trending_list_and_disclaimer_yield_no_entities(settings: Settings, tmp_path: Path) -> None:
    tagger = get_tagger(settings)
    lines = raw_seed(S000).splitlines()
    trending = lines[lines.index("相关推荐") :]
    disclaimer = [line for line in lines if line.startswith(("特别声明", "Notice: The content"))]
    assert len(disclaimer) == 2
    clutter_ids = set(LABELS["clutter_only"][S000])
    for name, text in {
        "disclaimer+trending": "\n\n".join(disclaimer + trending),
        "trending": "\n".join(trending),
        "trending+disclaimer": "\n".join(trending + disclaimer),
    }.items():
        assert clutter_ids <= set(tagger.tag("", text).mentions), name
        tags = tagger.tag("", clean_plain_text(text))
        assert (tags.entities, tags.mentions, tags.watch_terms) == ({}, {}, []), name
        path = tmp_path / f"{name}.txt"
        path.write_text(text, encoding="utf-8")
        [result] = inspect_json(path)
        assert (result["entities"], result["watch_terms"]) == ({}, []), name
        assert result["relevance"]["relevant"] is False


def test_all_seeds_are_relevant_under_the_export_control_rule(settings: Settings) -> None:
    for stem, tags in tagged_seeds(settings).items():
        assert tags.relevance.relevant, stem
        assert RULE in tags.relevance.matched_rules, stem
        assert tags.relevance.matched_terms, stem
        assert set(tags.relevance.matched_terms) <= set(tags.mentions), stem
        # Evidence is the seed's own sentences, in its own script (001 and 002 are zh-Hant).
        assert tags.relevance.evidence, stem
        for sentence in tags.relevance.evidence:
            assert sentence in raw_seed(stem), (stem, sentence)


def test_seed_keywords_are_free_of_stop_words(settings: Settings) -> None:
    stop = stop_words("stopwords-zh.txt")
    for stem, tags in tagged_seeds(settings).items():
        assert tags.keywords, stem
        assert [k for k in tags.keywords if normalise(k) in stop] == [], stem


def test_keywords_are_written_as_in_the_article(settings: Settings) -> None:
    tagger = get_tagger(settings)
    articles = [a for a in load_articles() if a.language in ("zh-Hant", "ja")][:40]
    assert {a.language for a in articles} == {"zh-Hant", "ja"}
    seen = 0
    for article in articles:
        text = unicodedata.normalize("NFKC", article.text)
        keywords = tagger.tag(article.title, article.body).keywords
        assert [k for k in keywords if k not in text] == [], article.id
        seen += len(keywords)
    assert seen > 200
    traditional = tagged_seeds(settings)[S001].keywords
    assert any(k != normalise(k) for k in traditional), traditional


def test_english_keywords_are_free_of_stop_words(settings: Settings) -> None:
    text = (MULTILINGUAL / "en_export_controls.txt").read_text(encoding="utf-8")
    keywords = get_tagger(settings).tag("", text).keywords
    assert keywords
    assert [k for k in keywords if k in stop_words("stopwords-en.txt")] == []


# ---------------------------------------------------------------- inspect


def test_unrelated_pages_are_not_relevant(env: Path) -> None:
    assert len(UNRELATED) >= 12
    for result in inspect_json(*UNRELATED):
        # An empty extraction would be irrelevant for the wrong reason.
        assert result["status"] == "ok", result["source"]
        assert result["title"], result["source"]
        assert result["relevance"]["relevant"] is False, (result["source"], result["relevance"])


@pytest.mark.parametrize("name", EXPECTED["files"])
def test_english_and_japanese_texts_get_the_seeds_ids(settings: Settings, name: str) -> None:
    [result] = inspect_json(MULTILINGUAL / name)
    ids = {i for ids in result["entities"].values() for i in ids}
    wanted = set(EXPECTED["expected_ids"]) | set(EXPECTED["also_expected_ids"])
    assert sorted(wanted - ids) == []
    # Analysts read names, not ids: every id comes with its watchlist label.
    assert ids <= set(result["entity_labels"])
    assert all(label and label != i for i, label in result["entity_labels"].items())
    assert result["relevance"]["relevant"] is EXPECTED["relevant"]
    assert set(EXPECTED["matched_rules"]) <= set(result["relevance"]["matched_rules"])
    # The same concepts carry the same ids in the Chinese seeds.
    seed_ids = {stem: set(tags.mentions) for stem, tags in tagged_seeds(settings).items()}
    for stem, found in seed_ids.items():
        assert sorted(set(EXPECTED["expected_ids"]) - found) == [], stem
    assert sorted(set(EXPECTED["also_expected_ids"]) - set().union(*seed_ids.values())) == []


def test_plain_text_input_is_cleaned_like_the_seeds(env: Path) -> None:
    [result] = inspect_json(SEEDS_DIR / f"{S000}.txt")
    ids = {i for ids in result["entities"].values() for i in ids}
    assert "hegseth" in ids
    assert result["relevance"]["relevant"]
    assert "singapore" not in ids
    assert sorted(set(LABELS["clutter_only"][S000]) & ids) == []


def test_article_text_that_looks_like_rich_markup_is_printed_as_written(env: Path, tmp_path: Path) -> None:
    # Titles and bodies are data: "[/…]" in a headline once crashed the CLI (MarkupError).
    title = "[/] Japan [red]export[/red] [/bold"
    path = tmp_path / "markup.txt"
    path.write_text(f"{title}\n\n{(MULTILINGUAL / 'en_export_controls.txt').read_text(encoding='utf-8')}")
    output = newsmon("inspect", str(path))
    assert title in output
    assert "because: " in output


# ---------------------------------------------------------------- search and retag


def _ids_by_term(es: Elasticsearch, indices: Indices, field: str, value: str) -> set[str]:
    hits = es.search(index=indices.articles, query={"term": {field: value}}, size=20, source=False)
    return {h["_id"] for h in hits["hits"]["hits"]}


@pytest.mark.parametrize(
    ("entity", "type_field", "stems"),
    [
        ("hegseth", "entities.person", {S000, S003}),
        ("dual_use_items", "entities.policy", {S000, S001, S002, S003}),
    ],
)
def test_search_by_entity_id_finds_seeds_in_both_scripts(
    store: tuple[Elasticsearch, Indices],
    settings: Settings,
    entity: str,
    type_field: str,
    stems: set[str],
) -> None:
    es, indices = store
    newsmon("seeds", "load")
    wanted = {f"seed-{stem}" for stem in stems}
    assert {h.id for h in search(es, indices, get_tagger(settings).watchlist, entity)} == wanted
    assert {h["id"] for h in json.loads(newsmon("search", entity, "--json"))} == wanted
    assert _ids_by_term(es, indices, "entity_ids", entity) == wanted
    assert _ids_by_term(es, indices, type_field, entity) == wanted


# 军工 is in 000 (simplified), 軍工 in 001 and 002 (traditional); 003 has neither.
NEW_ID = "defence_industry_test"
NEW_ENTITY = f"""\
  - id: {NEW_ID}
    type: organisation
    label: 军工 (defence industry)
    names:
      zh-Hans: [军工]
      zh-Hant: [軍工]

"""


def add_entity(env: Path, entity: str) -> None:
    """Put an entity first in the test's watchlist.yaml, with an mtime the cached tagger sees as new."""
    watchlist = env / "watchlist.yaml"
    old_mtime = watchlist.stat().st_mtime_ns
    watchlist.write_text(watchlist.read_text("utf-8").replace("entities:\n", "entities:\n" + entity, 1), "utf-8")
    # The tagger is cached per watchlist mtime; a coarse clock could hide the edit.
    if watchlist.stat().st_mtime_ns == old_mtime:
        os.utime(watchlist, ns=(old_mtime + 10**9, old_mtime + 10**9))


def _docs(es: Elasticsearch, indices: Indices) -> dict[str, dict[str, Any]]:
    found = es.search(index=indices.articles, size=20, seq_no_primary_term=True, version=True)
    return {h["_id"].removeprefix("seed-"): h for h in found["hits"]["hits"]}


def test_retag_applies_an_edited_watchlist_once(
    store: tuple[Elasticsearch, Indices],
    env: Path,
) -> None:
    es, indices = store
    newsmon("seeds", "load")
    for doc in _docs(es, indices).values():
        assert NEW_ID not in doc["_source"]["entity_ids"]

    add_entity(env, NEW_ENTITY)

    assert "4 of 4 documents retagged" in newsmon("retag")
    docs = _docs(es, indices)
    carrying = {stem for stem, d in docs.items() if NEW_ID in d["_source"]["entity_ids"]}
    assert carrying == {S000, S001, S002}
    for stem in carrying:
        assert NEW_ID in docs[stem]["_source"]["entities"]["organisation"]
    # What the seeds had before is still there.
    assert all("dual_use_items" in d["_source"]["entity_ids"] for d in docs.values())

    assert "0 of 4 documents retagged" in newsmon("retag")
    after = _docs(es, indices)
    assert {s: (d["_seq_no"], d["_version"]) for s, d in after.items()} == {
        s: (d["_seq_no"], d["_version"]) for s, d in docs.items()
    }


def test_retag_of_an_added_name_rewrites_only_the_articles_with_it_in_either_script(
    store: tuple[Elasticsearch, Indices],
    env: Path,
) -> None:
    es, indices = store
    newsmon("seeds", "load")
    before = _docs(es, indices)
    # Only the simplified name: the index finds the traditional 軍工 of 001 and 002 too.
    add_entity(env, NEW_ENTITY.replace("      zh-Hant: [軍工]\n", ""))

    assert "3 of 4 documents retagged" in newsmon("retag", "--name", "军工")
    after = _docs(es, indices)
    assert {s for s, d in after.items() if NEW_ID in d["_source"]["entity_ids"]} == {S000, S001, S002}
    # The article without the name was not rewritten; a full retag takes it to the new watchlist too.
    assert after[S003]["_version"] == before[S003]["_version"]
    assert "1 of 4 documents retagged" in newsmon("retag")


def test_a_large_retag_tags_on_worker_processes_what_this_process_would(
    store: tuple[Elasticsearch, Indices],
    env: Path,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    es, indices = store
    newsmon("seeds", "load")
    add_entity(env, NEW_ENTITY)
    monkeypatch.setattr(index, "RETAG_POOL_FROM", 1)  # four seeds count as many: workers tag them
    monkeypatch.setenv("NEWSMON_WORKERS", "2")

    with caplog.at_level("INFO", logger="newsmon.stages"):
        assert "4 of 4 documents retagged" in newsmon("retag")
    assert any("stage=retag" in r.getMessage() and "workers=2" in r.getMessage() for r in caplog.records)
    docs = _docs(es, indices)
    assert {s for s, d in docs.items() if NEW_ID in d["_source"]["entity_ids"]} == {S000, S001, S002}
    tagger = get_tagger(settings)
    for doc in docs.values():
        src = doc["_source"]
        published = datetime.fromisoformat(src["published_at"])
        here = json.loads(json.dumps(tag_fields(tagger.tag(src["title"], src["body"]), published)))
        assert {k: src.get(k) for k in here} == here


def test_an_article_labelled_while_the_retag_tags_it_keeps_the_label_and_gets_the_new_tags(
    store: tuple[Elasticsearch, Indices], env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    es, indices = store
    newsmon("seeds", "load")
    add_entity(env, NEW_ENTITY)
    labelled = f"seed-{S000}"
    verdict = {"verdict": "relevant", "labelled_at": "2026-12-06T22:00:00+00:00"}
    tag_chunks = index.tag_chunks

    def labelled_meanwhile(*args: Any, **kwargs: Any) -> Iterator[list[Any]]:
        # The analyst labels the article after the retag read it, before it is written.
        for chunk in tag_chunks(*args, **kwargs):
            for backing, doc_id, _ in chunk:
                if doc_id == labelled:
                    es.update(index=backing, id=doc_id, doc={"analyst": verdict})
            yield chunk

    monkeypatch.setattr(index, "tag_chunks", labelled_meanwhile)
    assert "4 of 4 documents retagged" in newsmon("retag")
    doc = es.get(index=indices.articles, id=labelled)["_source"]
    assert doc["analyst"] == verdict
    assert NEW_ID in doc["entity_ids"]


def test_a_retag_worker_blocked_for_good_ends_the_retag_with_an_error_naming_the_limit(
    store: tuple[Elasticsearch, Indices], env: Path
) -> None:
    es, indices = store
    newsmon("seeds", "load")
    add_entity(env, NEW_ENTITY)
    fault = {
        "PYTHONPATH": str(FAULTS),
        "NEWSMON_TEST_RETAG_BLOCKS": "1",
        "NEWSMON_WORKERS": "2",
        "NEWSMON_RETAG_WALL_TIMEOUT": "5",
    }
    # Without the limit this never returns, and the timeout fails the test.
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "retag"],
        cwd=PROJECT_ROOT,
        env={**os.environ, **fault},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 1
    assert "no tags within 5s of wall-clock time (NEWSMON_RETAG_WALL_TIMEOUT)" in " ".join(done.stderr.split())
    # Nothing was written, and a retag that can finish takes every article to the new watchlist.
    assert not any(NEW_ID in d["_source"]["entity_ids"] for d in _docs(es, indices).values())
    assert "4 of 4 documents retagged" in newsmon("retag")


# A new organisation named in English, both Chinese scripts (輝達 is not t2s of 英伟达) and Japanese.
NVIDIA_NAMES = ("Nvidia", "英伟达", "輝達", "エヌビディア")
NVIDIA = """\
  - id: nvidia_test
    type: organisation
    label: Nvidia
    names:
      en: [Nvidia]
      zh-Hans: [英伟达]
      zh-Hant: [輝達]
      ja: [エヌビディア]

"""


def _tags_of(es: Elasticsearch, indices: Indices) -> dict[str, dict[str, Any]]:
    """Every article's stored document with its version."""
    found = es.search(index=indices.articles, size=500, version=True)["hits"]["hits"]
    return {h["_id"]: h for h in found}


def _full_retag_differences(docs: dict[str, dict[str, Any]], settings: Settings) -> dict[str, list[str]]:
    """Per article, the tag fields that differ from what a full retag writes (tagging from scratch)."""
    tagger = get_tagger(settings)
    differences = {}
    for doc_id, doc in docs.items():
        src = doc["_source"]
        fields = tag_fields(tagger.tag(src["title"], src["body"]), datetime.fromisoformat(src["published_at"]))
        full = json.loads(json.dumps(fields))
        if wrong := sorted(k for k in full if k not in VERSION_FIELDS and src.get(k) != full[k]):
            differences[doc_id] = wrong
    return differences


def test_retag_for_edited_names_rewrites_only_the_articles_with_them_as_a_full_retag_would(
    store: tuple[Elasticsearch, Indices], env: Path, settings: Settings
) -> None:
    es, indices = store
    index_articles(
        settings,
        [(a, datetime(a.published.year, a.published.month, a.published.day, 9, tzinfo=UTC)) for a in load_articles()],
    )
    before = _tags_of(es, indices)
    naming = {
        i
        for i, d in before.items()
        if any(normalise(n) in normalise(d["_source"]["title"] + "\n\n" + d["_source"]["body"]) for n in NVIDIA_NAMES)
    }
    assert {before[i]["_source"]["language"] for i in naming} == {"en", "zh", "ja"}
    names = [arg for n in NVIDIA_NAMES for arg in ("--name", n)]
    watchlist = (env / "watchlist.yaml").read_text("utf-8")

    add_entity(env, NVIDIA)
    assert f"{len(naming)} of {len(before)} documents retagged" in newsmon("retag", *names)
    added = _tags_of(es, indices)
    assert {i for i, d in added.items() if "nvidia_test" in d["_source"]["entity_ids"]} == naming
    assert all("nvidia_test" in added[i]["_source"]["entities"]["organisation"] for i in naming)
    # The others were not rewritten, and need not be: their tags are what the new watchlist gives.
    assert {i for i, d in added.items() if d["_version"] != before[i]["_version"]} == naming
    assert _full_retag_differences(added, settings) == {}

    # Removing the names again takes the organisation out of exactly those articles, every field
    # as a full retag would leave it (an article whose only organisation it was lists none).
    (env / "watchlist.yaml").write_text(watchlist, "utf-8")
    os.utime(env / "watchlist.yaml", ns=(time.time_ns() + 10**9,) * 2)
    assert f"{len(naming)} of {len(before)} documents retagged" in newsmon("retag", *names)
    removed = _tags_of(es, indices)
    assert not any("nvidia_test" in d["_source"]["entity_ids"] for d in removed.values())
    assert _full_retag_differences(removed, settings) == {}
    # A new watchlist version that changes no tag: each article with the names is read, none written.
    (env / "watchlist.yaml").write_text(watchlist + "\n# reviewed\n", "utf-8")
    os.utime(env / "watchlist.yaml", ns=(time.time_ns() + 2 * 10**9,) * 2)
    output = newsmon("retag", *names)
    assert f"0 of {len(before)} documents retagged; {len(naming)} read, their tags unchanged" in output
    assert {i: d["_version"] for i, d in _tags_of(es, indices).items()} == {
        i: d["_version"] for i, d in removed.items()
    }


# ---------------------------------------------------------------- watchlist errors


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        (
            "  - id: japan\n    type: place\n",
            "  - id: japan\n    type: country\n",
            ["entities[0] (japan)", "country"],
        ),
        (
            "      - name: japan\n        groups: [japan]\n",
            "      - name: japan\n        groups: [japn]\n",
            ["rules[0] (export_control_japan_china)", "japn"],
        ),
        # A name may belong to one entry only; else one entry silently loses it.
        (
            "entities:\n",
            "entities:\n  - id: macron_test\n    type: person\n    names: {zh-Hans: [马克龙], zh-Hant: [馬克龍]}\n",
            ["macron_test", "(macron)", "马克龙"],
        ),
        (
            "{near: term, within: sentence, min_mentions: 2}",
            "{near: terms, within: sentence, min_mentions: 2}",
            ["rules[0] (export_control_japan_china)", "terms"],
        ),
        (
            "{near: term, within: paragraph, min_mentions: 2}",
            "{near: term, within: page, min_mentions: 2}",
            ["rules[0] (export_control_japan_china)", "within", "page"],
        ),
    ],
    ids=["bad-type", "unknown-group", "shared-name", "near-unknown-clause", "bad-within"],
)
def test_bad_watchlist_is_one_error_line_naming_file_and_entry(
    env: Path,
    old: str,
    new: str,
    named: list[str],
) -> None:
    watchlist = env / "watchlist.yaml"
    text = watchlist.read_text(encoding="utf-8")
    assert text.count(old) == 1
    watchlist.write_text(text.replace(old, new), encoding="utf-8")
    result = runner.invoke(app, ["inspect", str(MULTILINGUAL / "en_export_controls.txt"), "--json"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("error:"), errors[0]
    assert str(watchlist) in errors[0], errors[0]
    for word in named:
        assert word in errors[0], (word, errors[0])


# ---------------------------------------------------------------- segmentation


@pytest.fixture(scope="module")
def tagger(cache_dir: Path) -> Tagger:
    return Tagger(load_watchlist(CONFIG_DIR / "watchlist.yaml"), CONFIG_DIR, cache_dir)


def jieba_words(tagger: Tagger, text: str) -> list[str]:
    """What the segmenter gave before jieba-fast: jieba alone, with the same dictionary."""
    return [w for w in tagger.segmenter.tokenizer.cut(text, HMM=False) if re.search(r"\w", w)]


def test_segmentation_in_c_gives_jieba_s_words_on_every_corpus_article(tagger: Tagger) -> None:
    texts = {a.id: normalise(a.text) for a in load_articles()}
    differ = [i for i, text in texts.items() if tagger.segmenter.words(text) != jieba_words(tagger, text)]
    assert len(texts) >= 200
    assert differ == []
    # The watchlist's names are part of the dictionary both walk.
    assert "出口管制" in tagger.segmenter.words(normalise("中方宣布對日出口管制措施"))


@pytest.mark.parametrize(
    "text",
    [
        "美国向日本出售f-35战机和导弹",  # a watchlist name with "-", where jieba 0.39 ended a run
        "双十一买买买，人人人都在抢购",  # equally likely routes: jieba's tie wins
        "中国" * 200 + "，" + "ab12" * 100,  # runs past 256 characters
    ],
)
def test_runs_jieba_fast_would_cut_otherwise_get_jieba_s_words(tagger: Tagger, text: str) -> None:
    assert tagger.segmenter.words(text) == jieba_words(tagger, text)


def test_a_cut_short_idf_cache_is_read_again_and_keywords_do_not_change(tmp_path: Path) -> None:
    """jieba's IDF table is cached as marshal data; a cache file cut short (a crash while it was
    written elsewhere, a full disk) must give the same keywords, and be whole again after."""
    watchlist = load_watchlist(CONFIG_DIR / "watchlist.yaml")
    article = next(a for a in load_articles() if a.language == "zh-Hans")
    first = Tagger(watchlist, CONFIG_DIR, tmp_path).tag(article.title, article.body).keywords
    (cached,) = tmp_path.glob("jieba-idf-*.marshal")
    whole = cached.read_bytes()
    cached.write_bytes(whole[: len(whole) // 2])
    assert Tagger(watchlist, CONFIG_DIR, tmp_path).tag(article.title, article.body).keywords == first
    assert cached.read_bytes() == whole
