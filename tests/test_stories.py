"""Stories on real labelled articles (tests/data/articles): one event across scripts, events apart."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import Settings, load_settings
from pipeline.es import Indices, open_store
from pipeline.index import bulk_index
from pipeline.mail import COVERAGE_HEADING
from pipeline.run import alert_stage
from pipeline.stories import (
    EntityWeights,
    Fingerprint,
    NewArticle,
    Story,
    assign_batch,
    event_marks,
    story_marks,
    vector,
)
from pipeline.storyindex import RunStories
from pipeline.tag import Tagger, get_tagger
from pipeline.text import normalise
from pipeline.watchlist import load_watchlist
from tests.conftest import CONFIG_DIR
from tests.corpus import CorpusArticle, indexed_document, load_articles
from tests.servers import SmtpServer

# Three events on one topic that must stay three stories.
DUAL_USE_BAN = "cn-dual-use-ban-japan-2026-01"
ENTITY_LISTS = "cn-entity-lists-japan-2026-02-24"
CHIP_CONTROLS = "jp-chip-equipment-controls-promulgated-2023-05-23"


@pytest.fixture(scope="module")
def grouped(cache_dir: Path) -> list[tuple[CorpusArticle, str]]:
    """Every corpus article with the story the shipped rule gives it, grouped as one index would."""
    tagger = Tagger(load_watchlist(CONFIG_DIR / "watchlist.yaml"), CONFIG_DIR, cache_dir)
    articles = load_articles()
    new = []
    for article in articles:
        tags = tagger.tag(article.title, article.body)
        published = datetime.combine(article.published, time(), tzinfo=UTC)
        fingerprint = Fingerprint.of_article(tags.mentions, tags.story_marks, published, tags.title_entities)
        new.append(NewArticle(article.id, published, fingerprint))
    assigned = assign_batch(new, [], EntityWeights.of(a.fingerprint for a in new))
    return [(a, assigned[a.id].story_id) for a in articles]


def marks(text: str, published: date) -> frozenset[str]:
    return event_marks(story_marks(normalise(text)), published)


def test_numbers_and_dates_read_alike_in_every_script() -> None:
    hant = marks("商務部1月6日公告，禁止１００５項兩用物項出口", date(2026, 1, 6))
    ja = marks("商務省は6日、1005品目の輸出を禁止すると発表した", date(2026, 1, 7))
    en = marks("On January 6 MOFCOM banned exports of 1,005 dual-use items", date(2026, 1, 8))
    assert {"n:1005", "d:2026-01-06"} <= hant & ja & en
    assert marks("12月30日の発表", date(2026, 1, 2)) == {"d:2025-12-30"}, "the day of a date is not a number too"
    assert "n:2026" not in story_marks(normalise("2026年")), "a year names no event"


def test_a_date_is_the_day_it_names_from_the_articles_own_date() -> None:
    assert marks("外務省は6日に抗議した", date(2026, 2, 7)) == {"d:2026-02-06"}, "the 6th of February, not of January"
    assert marks("商务部6日宣布", date(2026, 1, 5)) == {"d:2026-01-06"}, "a later time zone's day after publication"
    assert marks("on Dec. 24, and 2025年4月4日", date(2026, 1, 7)) == {"d:2025-12-24", "d:2025-04-04"}
    assert marks("April 4", date(2026, 1, 7)) == {"d:2025-04-04"}, "a day without its year looks back"
    assert marks("10 markets in 3 sectors", date(2026, 1, 7)) == {"n:10"}, "no month there"
    named = story_marks(normalise("1月6日公告……外務省は8日抗議"))
    assert Fingerprint.of_article({}, named, datetime(2026, 1, 9, tzinfo=UTC)).news_date == date(2026, 1, 8), (
        "the latest day named up to publication is the news"
    )


def test_a_reaction_days_later_is_its_own_story_though_it_recaps_the_first() -> None:
    """The other side's next-day protest stays with the measure; an answer some days later does not."""

    def report(article_id: str, day: int, *days_named: int) -> NewArticle:
        named = [f"date:1-{d}" for d in days_named] + ["n:1005"]
        published = datetime(2026, 1, day, 9, tzinfo=UTC)
        mentions = {"mofcom": 2, "dual_use_items": 3, "japan": 2, "china": 2}
        return NewArticle(article_id, published, Fingerprint.of_article(mentions, named, published))

    ban, protest = report("ban", 6, 6), report("protest", 7, 6, 7)
    answer = report("answer", 9, 6, 9)  # the same entities and figures, its own day's news
    weights = EntityWeights({"japan": 9, "china": 9}, 10)
    stories = assign_batch([ban, protest, answer], [], weights)
    assert stories["protest"].story_id == "ban"
    assert stories["answer"].story_id == "answer"


def test_one_event_in_four_languages_is_mostly_one_story(grouped: list[tuple[CorpusArticle, str]]) -> None:
    for event, languages in ((DUAL_USE_BAN, 4), (ENTITY_LISTS, 3)):
        members = [(a, s) for a, s in grouped if a.event == event]
        biggest = max({s for _, s in members}, key=lambda s: sum(1 for _, m in members if m == s))
        in_biggest = [a for a, s in members if s == biggest]
        assert len(in_biggest) >= 0.7 * len(members), event
        assert len({a.language for a in in_biggest}) >= languages, event


def test_different_events_on_one_topic_stay_apart(grouped: list[tuple[CorpusArticle, str]]) -> None:
    stories_of: dict[str, set[str]] = defaultdict(set)
    for article, story in grouped:
        if article.event in (DUAL_USE_BAN, ENTITY_LISTS, CHIP_CONTROLS):
            stories_of[article.event].add(story)
    assert not stories_of[DUAL_USE_BAN] & stories_of[ENTITY_LISTS]
    assert not stories_of[DUAL_USE_BAN] & stories_of[CHIP_CONTROLS]
    assert not stories_of[ENTITY_LISTS] & stories_of[CHIP_CONTROLS]


def test_reports_headlining_another_measure_of_the_same_days_are_another_story(
    grouped: list[tuple[CorpusArticle, str]],
) -> None:
    """The rare-earth curbs reported in the dual-use ban's first days name the ban's entities too;
    their headlines name rare earths, and they are one story of their own, across languages."""
    story = {a.id: s for a, s in grouped}
    ban = [story[a.id] for a, _ in grouped if a.event == DUAL_USE_BAN]
    ban_story = max(set(ban), key=ban.count)
    curbs = ("zh-hant-rare-earth-curbs-hk01", "zh-hant-rare-earth-curbs-cnyes", "en-rare-earth-curbs-chosun")
    assert len({story[i] for i in curbs}) == 1, "the curbs in zh-Hant and en are one story"
    assert story[curbs[0]] != ban_story


def test_a_report_four_days_after_a_story_began_starts_its_own(grouped: list[tuple[CorpusArticle, str]]) -> None:
    """Livedoor's report of 10 January on the rare-earth curbs names the ban of the 6th and its
    entities; four days on, it no longer joins the ban's story."""
    story = {a.id: s for a, s in grouped}
    ban = [story[a.id] for a, _ in grouped if a.event == DUAL_USE_BAN]
    assert story["ja-rare-earth-curbs-contracts-livedoor"] != max(set(ban), key=ban.count)


def test_a_long_report_weighs_as_much_as_a_short_one_in_its_story() -> None:
    """A story's summed fingerprint counts each member once: an explainer naming one entity
    twenty times does not outweigh two reports of the other."""
    weights = EntityWeights({}, 10)
    day = datetime(2026, 1, 6, 9, tzinfo=UTC)
    story = Story("s", day)
    for mentions in ({"rare_earths": 20}, {"dual_use_items": 1}, {"dual_use_items": 1}):
        story.add(vector(Fingerprint(mentions, frozenset()), weights), None)
    dual_use = vector(Fingerprint({"dual_use_items": 1}, frozenset()), weights)
    rare_earths = vector(Fingerprint({"rare_earths": 1}, frozenset()), weights)
    assert story.similarity(dual_use) > story.similarity(rare_earths)


def test_the_same_text_in_two_scripts_is_one_story(grouped: list[tuple[CorpusArticle, str]]) -> None:
    story = {a.id: s for a, s in grouped}
    assert story["zh-hans-eu-resourceeu-plan-seccw"] == story["zh-hant-eu-resourceeu-plan-zeenzj"]


def test_the_actors_of_an_event_beyond_japan_and_china_gather_its_reports(
    grouped: list[tuple[CorpusArticle, str]],
) -> None:
    """The EU's RESourceEU plan of 3 December: 欧盟, 歐盟, 欧州連合 and the European Commission are
    one entity, RESourceEU another, so its reports in four scripts meet as one story."""
    story = {a.id: s for a, s in grouped}
    reports = (
        "en-eu-resourceeu-plan-renewablematter",
        "en-eu-resourceeu-plan-greenergydaily",
        "zh-hans-eu-resourceeu-plan-seccw",
        "zh-hant-eu-resourceeu-plan-zeenzj",
        "ja-eu-resourceeu-plan-kyodo-oita",
    )
    assert len({story[i] for i in reports}) == 1


def corpus_document(article: CorpusArticle, tagger: Tagger) -> tuple[str, dict[str, Any]]:
    """A corpus article as the pipeline indexes it: tagged, with its date."""
    return article.id, indexed_document(article, tagger.tag(article.title, article.body))


def corpus_documents(settings: Settings, *ids: str) -> list[tuple[str, dict[str, Any]]]:
    """Corpus articles by id, as the pipeline indexes them."""
    tagger = get_tagger(settings)
    by_id = {a.id: a for a in load_articles()}
    return [corpus_document(by_id[i], tagger) for i in ids]


def stories_in_index(es: Elasticsearch, indices: Indices) -> dict[str, dict[str, Any]]:
    hits = es.search(index=indices.articles, size=1000, source_includes=["story"], query={"match_all": {}})
    return {h["_id"]: h["_source"]["story"] for h in hits["hits"]["hits"]}


def test_stories_in_the_index_survive_a_rerun_and_count_a_late_joiner(
    store: tuple[Elasticsearch, Indices], settings: Settings
) -> None:
    es, indices = store
    tagger = get_tagger(settings)
    season = [a for a in load_articles() if date(2025, 11, 15) <= a.published <= date(2026, 2, 28)]
    late = [a for a in season if a.id == "zh-hant-eu-resourceeu-plan-zeenzj"]  # seccw's text, in traditional
    first = sorted((a for a in season if a not in late), key=lambda a: a.published)
    docs = [corpus_document(a, tagger) for a in first]
    run = RunStories()  # in chunks of one run, as the pipeline indexes them: no refresh until the end
    for start in range(0, len(docs), 16):
        bulk_index(es, indices, docs[start : start + 16], run=run)
    es.indices.refresh(index=indices.articles)
    before = stories_in_index(es, indices)

    bulk_index(es, indices, [corpus_document(a, tagger) for a in first])  # the same run again
    assert stories_in_index(es, indices) == before

    bulk_index(es, indices, [corpus_document(a, tagger) for a in late])
    after = stories_in_index(es, indices)
    joined = after[late[0].id]["id"]
    assert joined == after["zh-hans-eu-resourceeu-plan-seccw"]["id"], "the late traditional copy joins its original"
    lead = after[joined]
    assert lead["size"] == before[joined]["size"] + 1
    assert {"zh-Hans", "zh-Hant"} <= set(lead["languages"])
    members: dict[str, list[str]] = defaultdict(list)
    for doc_id, story in after.items():
        members[story["id"]].append(doc_id)
    for story_id, ids in members.items():
        assert [i for i in ids if after[i]["lead"]] == [story_id], "one lead per story, whose id it bears"
        assert after[story_id]["size"] == len(ids), "the lead knows its story's size"
        assert after[story_id]["languages"] == sorted({after[i]["language"] for i in ids})
        assert all(after[i]["first_seen"] == after[story_id]["first_seen"] for i in ids)
    ban = [after[a.id]["id"] for a in season if a.event == DUAL_USE_BAN]
    biggest = max(set(ban), key=ban.count)
    assert len(after[biggest]["languages"]) >= 3, "the ban is one story across languages in the index too"
    assert not set(ban) & {after[a.id]["id"] for a in season if a.event == ENTITY_LISTS}

    result = CliRunner().invoke(
        app, ["stories", "--since", "10000d", "--limit", "1000", "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in json.loads(result.output)}
    assert set(rows) == set(members), "newsmon stories lists every story once"
    assert rows[joined]["size"] == lead["size"] and rows[joined]["languages"] == lead["languages"]
    sizes = [r["size"] for r in json.loads(result.output)]
    assert sizes == sorted(sizes, reverse=True), "largest first"


def write_rule(config_dir: Path, extra: str = "", max_age_days: int = 3) -> None:
    """One rule, `jc`, for the export-control topic, in UTC: immediate unless `extra` says otherwise."""
    (config_dir / "alerts.yaml").write_text(
        "rules:\n  - name: jc\n    recipients: [desk@example.org]\n"
        f"{extra}    condition:\n      relevance_rules: [export_control_japan_china]\n"
        f"    max_age_days: {max_age_days}\n",
        encoding="utf-8",
    )


def test_an_email_shows_each_story_once_and_a_new_language_version_is_not_sent_again(
    store: tuple[Elasticsearch, Indices], settings: Settings, env: Path, mail_settings: SmtpServer
) -> None:
    es, indices = store
    write_rule(env)
    tagger = get_tagger(settings)
    ban = sorted((a for a in load_articles() if a.event == DUAL_USE_BAN), key=lambda a: a.published)
    first = [a for a in ban if a.published == date(2026, 1, 6)]
    late = [a for a in ban if date(2026, 1, 7) <= a.published <= date(2026, 1, 8)]
    bulk_index(es, indices, [corpus_document(a, tagger) for a in first])
    alert_stage(load_settings(), es, indices, now=datetime(2026, 1, 7, tzinfo=UTC))
    ((_, message),) = mail_settings.messages
    text = message.get_body(preferencelist=("plain",)).get_content()
    sent = stories_in_index(es, indices)
    relevant = [
        h["_id"]
        for h in es.search(index=indices.articles, size=100, query={"term": {"relevance.relevant": True}})["hits"][
            "hits"
        ]
    ]
    assert len(re.findall(r"^\* ", text, re.M)) == len({sent[i]["id"] for i in relevant}) < len(relevant)
    also = [line for line in text.splitlines() if "Also reported by:" in line]
    assert any(re.search(r"\((zh-Hant|zh-Hans|ja|en)\) https?://", line) for line in also), also

    bulk_index(es, indices, [corpus_document(a, tagger) for a in late])
    now_stories = stories_in_index(es, indices)
    joined = [a for a in late if now_stories[a.id]["id"] in {sent[i]["id"] for i in relevant}]
    assert joined, "a later report joins a story already sent"
    alert_stage(load_settings(), es, indices, now=datetime(2026, 1, 9, tzinfo=UTC))
    later = "".join(m.get_body(preferencelist=("plain",)).get_content() for _, m in mail_settings.messages[1:])
    items = "".join(text.partition(COVERAGE_HEADING)[0] for text in later.split("[newsmon]"))
    assert not [a.url for a in joined if a.url in items], "a story already sent is not sent again as an item"
    assert "new coverage of a story sent on 2026-01-07" in later, "its new reports are listed as new coverage"


def plain(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]


def test_a_digest_lists_each_story_once_then_its_new_coverage_beside_the_new_stories(
    store: tuple[Elasticsearch, Indices], settings: Settings, env: Path, mail_settings: SmtpServer
) -> None:
    es, indices = store
    write_rule(env, '    mode: digest\n    digest_at: "08:00"\n', max_age_days=7)
    tagger = get_tagger(settings)
    ban = [a for a in load_articles() if a.event == DUAL_USE_BAN]
    first = [a for a in ban if a.published == date(2026, 1, 6)]
    late = [a for a in ban if date(2026, 1, 7) <= a.published <= date(2026, 1, 9)]
    # Japan's answer days later, a story of its own (as tests/data/articles labels it).
    answer = [a for a in load_articles() if a.event == "jp-takaichi-rejects-dual-use-ban-2026-01-11"]

    def digest(now: datetime) -> int:
        return int(alert_stage(load_settings(), es, indices, now=now)["emails"])

    assert digest(datetime(2026, 1, 7, 7, tzinfo=UTC)) == 0, "the first digest goes out at the next 08:00"
    bulk_index(es, indices, [corpus_document(a, tagger) for a in first])
    assert digest(datetime(2026, 1, 7, 9, tzinfo=UTC)) == 1
    text = plain(mail_settings.messages[0][1])
    sent = stories_in_index(es, indices)
    assert len(re.findall(r"^\* ", text, re.M)) == len({sent[a.id]["id"] for a in first}) < len(first)
    also = [line for line in text.splitlines() if "Also reported by:" in line]
    assert any(re.search(r"\((zh-Hant|zh-Hans|ja|en)\) https?://", line) for line in also), also
    assert COVERAGE_HEADING not in text, "nothing was sent before: no new coverage"

    bulk_index(es, indices, [corpus_document(a, tagger) for a in late + answer])
    assert digest(datetime(2026, 1, 7, 20, tzinfo=UTC)) == 0, "one digest a day"
    assert digest(datetime(2026, 1, 12, 9, tzinfo=UTC)) == 1
    message = mail_settings.messages[1][1]
    items, _, coverage = plain(message).partition(COVERAGE_HEADING)
    now_stories = stories_in_index(es, indices)
    joined = [a for a in late if now_stories[a.id]["id"] in {sent[a.id]["id"] for a in first}]
    assert joined, "later reports join the story the first digest sent"
    assert not [a.url for a in joined if a.url in items], "a story already sent is no new item"
    assert "new coverage of a story sent on 2026-01-07" in coverage
    assert all(a.url in coverage for a in joined), "each new report is listed under the story sent"
    leads = re.findall(r"^\* .*\n  (\S+)$", items, re.M)  # each item's link, under its title
    answered = {now_stories[a.id]["id"] for a in answer}
    assert len(answered) == len([a for a in answer if a.url in leads]) < len(answer), "one item per story"
    assert all(a.url in items for a in answer), "a story's other reports are listed under its item"
    assert not [a.url for a in answer if a.url in coverage]
    assert "new article" in message["Subject"] and "new coverage of 1 story already sent" in message["Subject"]
    assert digest(datetime(2026, 1, 12, 10, tzinfo=UTC)) == 0, "a re-run sends nothing more"


def test_new_language_versions_of_a_story_sent_are_mailed_once_as_new_coverage(
    store: tuple[Elasticsearch, Indices], settings: Settings, env: Path, mail_settings: SmtpServer
) -> None:
    es, indices = store
    write_rule(env)
    tagger = get_tagger(settings)
    by_id = {a.id: a for a in load_articles()}
    sent, ja, en = (
        by_id[i] for i in ("zh-hant-entity-lists-cnyes", "ja-entity-lists-livedoor-a", "en-entity-lists-capitalfm")
    )
    # The weeks before: the other events' reports, too old to alert, weigh the entities (Japan, China) as usual.
    history = datetime(2026, 2, 5, 9, tzinfo=UTC)
    before = [a for a in load_articles() if a.event != ENTITY_LISTS]
    bulk_index(es, indices, [(a.id, indexed_document(a, tagger.tag(a.title, a.body), history)) for a in before])
    bulk_index(es, indices, [corpus_document(sent, tagger)])
    alert_stage(load_settings(), es, indices, now=datetime(2026, 2, 25, tzinfo=UTC))
    assert len(mail_settings.messages) == 1 and sent.url in mail_settings.messages[0][1].get_body().get_content()

    bulk_index(es, indices, [corpus_document(a, tagger) for a in (ja, en)])
    story = stories_in_index(es, indices)
    assert story[ja.id]["id"] == story[en.id]["id"] == story[sent.id]["id"], "the reports join the story sent"
    mail_settings.delay = 1.0  # the two runs overlap while the first is still sending
    with ThreadPoolExecutor(2) as pool:
        runs = [
            pool.submit(alert_stage, load_settings(), *open_store(settings), now=datetime(2026, 2, 26, tzinfo=UTC))
            for _ in range(2)
        ]
    assert sorted(run.result()["alerted"] for run in runs) == [0, 2]
    assert len(mail_settings.messages) == 2, "two runs at once mail the new coverage once"
    message = mail_settings.messages[1][1]
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert message["Subject"].startswith("[newsmon] jc: new coverage of 1 story already sent")
    assert not re.findall(r"^\* ", text, re.M), "no new item: the story was sent"
    (line,) = [line for line in text.splitlines() if "new coverage of a story sent on" in line]
    assert line.startswith(f"- {sent.title} — new coverage of a story sent on 2026-02-25: ")
    assert f"{ja.outlet} (ja) {ja.url}" in line and f"{en.outlet} (en) {en.url}" in line
    assert f'href="{ja.url}"' in html and f'href="{en.url}"' in html

    alert_stage(load_settings(), es, indices, now=datetime(2026, 2, 26, 12, tzinfo=UTC))
    assert len(mail_settings.messages) == 2, "a re-run sends nothing more"


def test_a_rule_can_mail_new_coverage_only_beside_news(
    store: tuple[Elasticsearch, Indices], settings: Settings, env: Path, mail_settings: SmtpServer
) -> None:
    es, indices = store
    write_rule(env, "    new_coverage_alone: false\n")
    tagger, by_id = get_tagger(settings), {a.id: a for a in load_articles()}
    bulk_index(es, indices, [corpus_document(by_id["zh-hant-dual-use-ban-cna-yahoo"], tagger)])
    alert_stage(load_settings(), es, indices, now=datetime(2026, 1, 7, tzinfo=UTC))
    bulk_index(es, indices, [corpus_document(by_id["ja-dual-use-ban-peoplecn"], tagger)])
    alert_stage(load_settings(), es, indices, now=datetime(2026, 1, 8, tzinfo=UTC))
    assert len(mail_settings.messages) == 1, "new coverage alone is not mailed when the rule says so"


def test_the_bench_names_the_events_split_and_folded_together() -> None:
    from tests.bench.stories import confusion, pairwise

    ban = [a for a in load_articles() if a.event == DUAL_USE_BAN][:3]
    lists = [a for a in load_articles() if a.event == ENTITY_LISTS][:2]
    # The ban is split in two; its third report and the listing are folded into one story.
    story_of = {ban[0].id: "s1", ban[1].id: "s1", ban[2].id: "s2", lists[0].id: "s2", lists[1].id: "s2"}
    split, merged = confusion(ban + lists, story_of)
    assert split == {DUAL_USE_BAN: 2}
    assert merged == {f"{DUAL_USE_BAN} + {ENTITY_LISTS}": 2}
    precision, recall, pairs = pairwise(ban + lists, story_of)
    assert (precision, recall, pairs) == (2 / 4, 2 / 4, 4)
