"""The backlog bench's run: process every queued entry once, print the counts as JSON."""

from __future__ import annotations

import json

from pipeline.config import load_settings
from pipeline.es import open_store
from pipeline.lifecycle import process_entries


def main() -> None:
    settings = load_settings()
    es, indices = open_store(settings)
    print(json.dumps(process_entries(settings, es, indices)))


if __name__ == "__main__":
    main()
