"""`make bench`: the pipeline's figures, each measured beside its comparison in the same run.

Sections (one module each): extraction quality and CPU cost (`quality`), pipeline
throughput with the per-stage split (`throughput`), conditional polling of many feeds
(`polling`), alert latency through a real `newsmon run --once` (`alerting`), and
tagging speed and start-up (`tagging`). `runner` starts an embedded Elasticsearch
node and the loopback servers, prints one table and writes var/bench/latest.json.

Machines are noisy, so every figure sits beside a comparison measured in the same run
and the ratio is what to read.
"""
