"""The simplest end-to-end script a new user would write: the yardstick for `newsmon run --once`.

Sequential on purpose: feedparser, httpx, trafilatura.extract, jieba.lcut, one bulk call.
Usage: python -m tests.bench.naive_script ES_URL INDEX FEED_URL...
"""

import sys

import feedparser
import httpx
import jieba
import trafilatura
from elasticsearch import Elasticsearch, helpers


def main(es_url: str, index: str, feed_urls: list[str]) -> int:
    docs = []
    with httpx.Client(timeout=30) as http:
        for feed_url in feed_urls:
            for entry in feedparser.parse(http.get(feed_url).content).entries:
                html = http.get(entry.link).text
                body = trafilatura.extract(html) or ""
                words = " ".join(jieba.lcut(body))
                docs.append(
                    {
                        "_index": index,
                        "_id": entry.link,
                        "url": entry.link,
                        "title": entry.get("title", ""),
                        "body": body,
                        "words": words,
                    }
                )
    # A generous timeout: a loaded machine must slow the yardstick down, not fail it.
    indexed, _ = helpers.bulk(Elasticsearch(es_url, request_timeout=300), docs, refresh=True)
    print(indexed)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
