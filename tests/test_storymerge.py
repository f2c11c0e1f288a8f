"""Two runs that each start a story for one event at once: one story when they end (real node)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

from elasticsearch import Elasticsearch

from pipeline.config import Settings
from pipeline.es import Indices, open_store
from pipeline.index import bulk_index
from pipeline.storyindex import RunStories
from pipeline.storymerge import converge
from pipeline.tag import get_tagger
from tests.corpus import load_articles
from tests.test_stories import corpus_document, stories_in_index

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
