"""Two runs that each start a story for one event at once: one story when they end (real node, real aiosmtpd)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from threading import Barrier
from typing import Any

import pytest
from elasticsearch import Elasticsearch, helpers

from pipeline import storyindex
from pipeline.config import Settings, load_settings
from pipeline.document import language_tag
from pipeline.es import Indices, open_store
from pipeline.index import bulk_index
from pipeline.lifecycle import process_entries
from pipeline.run import alert_stage
from pipeline.storyindex import RunStories
from pipeline.storymerge import StoryMergeError, converge, resume
from pipeline.tag import get_tagger
from tests.corpus import load_articles
from tests.servers import SmtpServer
from tests.test_stories import corpus_document, corpus_documents, stories_in_index, write_rule

# Two reports of China's 6 January 2026 dual-use ban, in traditional Chinese and in Japanese.
REPORTS = ("zh-hant-dual-use-ban-cna-yahoo", "ja-dual-use-ban-peoplecn")


def test_two_runs_at_once_each_starting_a_story_for_one_event_end_with_one(
    store: tuple[Elasticsearch, Indices], settings: Settings
) -> None:
    es, indices = store
    tagger = get_tagger(settings)
    by_id = {a.id: a for a in load_articles()}
    docs = [corpus_document(by_id[i], tagger) for i in REPORTS]
    # Both runs index before either refreshes, as two runs do within one refresh interval.
    es.indices.put_settings(index=indices.articles, settings={"index": {"refresh_interval": "-1"}})
    indexed = Barrier(2)

    def run(doc: tuple[str, dict]) -> tuple[RunStories, bool, int]:
        es, indices = open_store(settings)
        stories = RunStories()
        bulk_index(es, indices, [doc], run=stories)
        indexed.wait()
        es.indices.refresh(index=indices.articles)  # what a run does at its end, then converge
        return stories, doc[1]["story"]["lead"], len(converge(es, indices, stories))

    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(run, docs))
    assert [led for _, led, _ in runs] == [True, True], "each run started a story: neither saw the other's"
    assert sum(merged for _, _, merged in runs) >= 1
    after = stories_in_index(es, indices)
    assert len({s["id"] for s in after.values()}) == 1, after
    (lead,) = [s for s in after.values() if s["lead"]]
    assert lead["size"] == 2 and lead["languages"] == ["ja", "zh-Hant"]
    assert len({s["first_seen"] for s in after.values()}) == 1

    for stories, _, _ in runs:  # merging again changes nothing
        converge(es, indices, stories)
    assert stories_in_index(es, indices) == after


def test_a_story_mailed_then_merged_away_counts_as_sent_for_the_survivor(
    store: tuple[Elasticsearch, Indices], settings: Settings, env: Path, mail_settings: SmtpServer
) -> None:
    es, indices = store
    write_rule(env)
    tagger = get_tagger(settings)
    by_id = {a.id: a for a in load_articles()}
    earlier, mailed = (corpus_document(by_id[i], tagger) for i in REPORTS)  # published 6 and 7 January
    # Run B chooses a story for its report before run A's is searchable, and writes it only after
    # run A has indexed and mailed its own: each report starts a story, and only A's is mailed.
    run_b = RunStories()
    leads = storyindex.assign(es, indices, [earlier], run_b)
    bulk_index(es, indices, [mailed])
    alert_stage(load_settings(), es, indices, now=datetime(2026, 1, 8, tzinfo=UTC))
    ((_, first),) = mail_settings.messages
    assert by_id[REPORTS[1]].url in first.get_body().get_content()  # type: ignore[union-attr]
    helpers.bulk(es, [{"_index": indices.articles, "_id": earlier[0], "_source": earlier[1]}])
    storyindex.update_leads(es, leads)
    es.indices.refresh(index=indices.articles)

    (merge,) = converge(es, indices, run_b)  # B's run ends: the mailed story merges into B's earlier one
    assert (merge.merged, merge.into) == (mailed[0], earlier[0])
    alert_stage(load_settings(), es, indices, now=datetime(2026, 1, 8, 12, tzinfo=UTC))
    assert len(mail_settings.messages) == 2
    message = mail_settings.messages[1][1]
    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert not re.findall(r"^\* ", text, re.M), "the survivor is not mailed again as a new story"
    assert message["Subject"].startswith("[newsmon] jc: new coverage of 1 story already sent")
    (line,) = [line for line in text.splitlines() if "new coverage of a story sent on" in line]
    earlier_article = by_id[REPORTS[0]]
    assert line.startswith(f"- {by_id[REPORTS[1]].title} — new coverage of a story sent on 2026-01-08: ")
    assert f"{earlier_article.outlet} (zh-Hant) {earlier_article.url}" in line
    alert_stage(load_settings(), es, indices, now=datetime(2026, 1, 9, tzinfo=UTC))
    assert len(mail_settings.messages) == 2, "and it is sent once"


def nested_objects(doc: dict[str, Any]) -> int:
    """The nested documents Elasticsearch makes of one article (its entity mentions and discovered names)."""
    return len(doc.get("entity_mentions") or []) + len(doc.get("discovered") or [])


def test_a_merge_the_node_refused_half_way_is_finished_by_the_next_run(
    store: tuple[Elasticsearch, Indices], settings: Settings
) -> None:
    es, indices = store
    earlier, lead, member = corpus_documents(settings, *REPORTS, "ja-dual-use-ban-mynavi")
    limit = max(nested_objects(d) for _, d in (earlier, lead))
    assert nested_objects(member[1]) > limit, "the report the node will refuse has the most nested objects"
    es.indices.put_settings(index=indices.articles, settings={"index": {"refresh_interval": "-1"}})
    run_a, run_b = RunStories(), RunStories()
    bulk_index(es, indices, [earlier], run=run_b)  # two runs at once, neither seeing the other's story
    bulk_index(es, indices, [lead], run=run_a)
    bulk_index(es, indices, [member], run=run_a)  # run A's next batch joins its story
    es.indices.refresh(index=indices.articles)
    assert stories_in_index(es, indices)[member[0]]["id"] == lead[0]

    # The node now refuses to write the member again: more nested objects than the index allows.
    es.indices.put_settings(index=indices.articles, settings={"index": {"mapping.nested_objects.limit": limit}})
    with pytest.raises(StoryMergeError, match=f"story {lead[0]} not merged into {earlier[0]}"):
        converge(es, indices, run_a)
    half = stories_in_index(es, indices)
    assert (half[lead[0]]["id"], half[member[0]]["id"]) == (earlier[0], lead[0]), "half merged"

    es.indices.put_settings(index=indices.articles, settings={"index": {"mapping.nested_objects.limit": None}})
    process_entries(settings, es, indices)  # the next run, with nothing new to fetch
    after = stories_in_index(es, indices)
    assert {s["id"] for s in after.values()} == {earlier[0]}, "one story: the merge is finished"
    assert (after[earlier[0]]["size"], after[earlier[0]]["languages"]) == (3, ["ja", "zh-Hant"])
    assert not [i for i, s in after.items() if s.get("merge")], "no merge is left pending"
    process_entries(settings, es, indices)
    assert stories_in_index(es, indices) == after


def test_a_story_whose_lead_the_node_rejected_still_merges(
    store: tuple[Elasticsearch, Indices], settings: Settings
) -> None:
    es, indices = store
    earlier, rejected, member = corpus_documents(settings, REPORTS[0], "ja-dual-use-ban-mynavi", REPORTS[1])
    limit = max(nested_objects(d) for _, d in (earlier, member))
    assert nested_objects(rejected[1]) > limit
    es.indices.put_settings(index=indices.articles, settings={"index": {"refresh_interval": "-1"}})
    es.indices.put_settings(index=indices.articles, settings={"index": {"mapping.nested_objects.limit": limit}})
    run_a = RunStories()
    bulk_index(es, indices, [earlier], run=RunStories())  # another run's story, unseen by run A
    assert bulk_index(es, indices, [rejected], run=run_a).rejected, "the node refuses run A's first report"
    bulk_index(es, indices, [member], run=run_a)  # which run A's next report joins
    es.indices.refresh(index=indices.articles)

    (merge,) = converge(es, indices, run_a)
    assert merge.merged == rejected[0]
    after = stories_in_index(es, indices)
    assert set(after) == {earlier[0], member[0]} and {s["id"] for s in after.values()} == {earlier[0]}
    assert after[earlier[0]]["size"] == 2


def write_stories(
    es: Elasticsearch, indices: Indices, docs: list[tuple[str, dict[str, Any]]], stories: dict[str, dict[str, Any]]
) -> None:
    """The documents indexed with the story fields given (what runs that raced left), then a refresh."""
    actions = [
        {"_index": indices.articles, "_id": i, "_source": d | {"story": stories[i] | {"language": language_tag(d)}}}
        for i, d in docs
    ]
    helpers.bulk(es, actions, refresh=True)


def test_a_half_done_merge_follows_its_survivor_merged_on_twice_to_the_story_that_leads(
    store: tuple[Elasticsearch, Indices], settings: Settings
) -> None:
    es, indices = store
    docs = corpus_documents(
        settings,
        "zh-hant-dual-use-ban-cna-yahoo",
        "en-dual-use-ban-crbcnews",
        "ja-dual-use-ban-mynavi",
        "ja-dual-use-ban-peoplecn",
    )
    (z, _), (a, _), (b, _), (c, _) = docs
    assert a < b < c, "resume takes the merges in id order: A's is finished before C's"
    start = {s: f"2026-01-0{day}T08:00:00+00:00" for day, s in enumerate((z, a, b, c), 6)}

    def moved(into: str, merge: str | None = None) -> dict[str, Any]:
        mark = {"merge": {"into": merge, "first_seen": start[merge]}} if merge else {}
        return {"id": into, "first_seen": start[into], "lead": False} | mark

    # Runs that raced left three merges half done: C is marked into B, nothing moved; B's lead has
    # moved into A; A's lead has moved into Z, its member B's lead not yet. Z alone still leads.
    write_stories(
        es,
        indices,
        docs,
        {
            z: {"id": z, "first_seen": start[z], "lead": True, "size": 1, "languages": ["zh-Hant"]},
            a: moved(z, merge=z),
            b: moved(a, merge=a),
            c: {"id": c, "first_seen": start[c], "lead": True, "merge": {"into": b, "first_seen": start[b]}},
        },
    )
    assert resume(es, indices) == 3
    after = stories_in_index(es, indices)
    assert {i: s["id"] for i, s in after.items()} == dict.fromkeys((z, a, b, c), z), "one story, led by Z"
    assert [i for i, s in after.items() if s["lead"]] == [z]
    assert (after[z]["size"], after[z]["languages"], after[c]["first_seen"]) == (4, ["en", "ja", "zh-Hant"], start[z])
    assert not [i for i, s in after.items() if s.get("merge")], "no merge is left pending"
    assert resume(es, indices) == 0
    assert stories_in_index(es, indices) == after


def test_marks_that_loop_end_at_one_story_of_the_loop(store: tuple[Elasticsearch, Indices], settings: Settings) -> None:
    es, indices = store
    docs = corpus_documents(settings, *REPORTS)
    (x, _), (y, _) = sorted(docs)
    # No run marks so (later merges into earlier): a hand edit or a bug. Resume must still end, with one story.
    first_seen = "2026-01-06T08:00:00+00:00"
    write_stories(
        es,
        indices,
        docs,
        {
            x: {"id": x, "first_seen": first_seen, "lead": True, "merge": {"into": y, "first_seen": first_seen}},
            y: {"id": y, "first_seen": first_seen, "lead": True, "merge": {"into": x, "first_seen": first_seen}},
        },
    )
    assert resume(es, indices) == 2
    after = stories_in_index(es, indices)
    assert {i: (s["id"], s["lead"]) for i, s in after.items()} == {x: (x, True), y: (x, False)}
    assert after[x]["size"] == 2 and not [i for i, s in after.items() if s.get("merge")]
