"""Section: names beyond the watchlist on the labelled real corpus, and what finding them costs.

Precision counts (article, name) pairs: a name judged real in discovered-labels.yaml is right,
a name judged not a name or not judged yet is wrong. Cost: discovery's POS tagging (plain
segmentation, posseg on the unknown words only) against plain segmentation and against
jieba.posseg over the whole text, and the share discovery adds to tagging (it runs on
relevant articles only). Each article is measured with the cache of tagged words emptied.
"""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.config import PROJECT_ROOT
from pipeline.tag import Tagger
from pipeline.text import detect_script, normalise, normalise_mapped
from pipeline.watchlist import load_watchlist
from tests.bench.figures import Row, Section, fmt
from tests.corpus import load_articles, load_name_labels

CONFIG_DIR = PROJECT_ROOT / "config"
PRECISION_TARGET = 0.80


def measure(cache_dir: Path) -> Section:
    section = Section("discovery")
    tagger = Tagger(load_watchlist(CONFIG_DIR / "watchlist.yaml"), CONFIG_DIR, cache_dir)
    labels = load_name_labels()
    articles = list(load_articles())
    began = time.process_time()
    tagger.discoverer.discover("预热", "预热", [0, 1], "zh")  # loads jieba.posseg's model
    posseg_load_s = time.process_time() - began
    pairs: list[tuple[str, str, bool]] = []  # (article, name, real)
    import jieba.posseg  # after the load above, which it would otherwise hide

    full_posseg = jieba.posseg.POSTokenizer(tagger.segmenter.tokenizer)
    tag_cpu = discover_cpu = cut_cpu = posseg_cpu = full_cpu = 0.0
    relevant = chinese = 0
    for article in articles:
        began = time.process_time()
        tags = tagger.tag(article.title, article.body)
        tag_cpu += time.process_time() - began
        pairs += [(article.id, d.name, d.name in labels.real) for d in tags.discovered]
        if not tags.relevance.relevant:
            continue
        relevant += 1
        norm_text, offsets = normalise_mapped(article.text)
        language, _ = detect_script(article.text)
        tagger.discoverer.forget()
        began = time.process_time()
        tagger.discoverer.discover(article.text, norm_text, offsets, language)
        discover_cpu += time.process_time() - began
        if language == "zh":
            chinese += 1
            began = time.process_time()
            tagger.segmenter.words(normalise(article.text))
            cut_cpu += time.process_time() - began
            tagger.discoverer.forget()
            began = time.process_time()
            list(tagger.discoverer.pos_tags(norm_text))
            posseg_cpu += time.process_time() - began
            began = time.process_time()
            list(full_posseg.cut(norm_text))
            full_cpu += time.process_time() - began
    unjudged = sorted({n for _, n, _ in pairs if n not in labels.real | labels.not_names})
    n = len(articles)
    tag_ms = tag_cpu / n * 1000
    discover_ms = discover_cpu / n * 1000  # spread over all articles, as the pipeline pays it
    section.data |= {
        "discovered_names": len(pairs),
        "discovered_unjudged": len(unjudged),
        "discovery_ms_per_relevant_article": discover_cpu / relevant * 1000 if relevant else None,
        "discovery_ms_per_article": discover_ms,
        "tag_ms_per_article": tag_ms,
        "discovery_share_of_tagging": discover_ms / tag_ms if tag_ms else None,
        "posseg_ms_per_chinese_article": posseg_cpu / chinese * 1000 if chinese else None,
        "segment_ms_per_chinese_article": cut_cpu / chinese * 1000 if chinese else None,
        "full_posseg_ms_per_chinese_article": full_cpu / chinese * 1000 if chinese else None,
        "posseg_load_s": posseg_load_s,
    }
    # The rules and labels were made looking at every article: there is no held-out split here.
    precision = sum(1 for _, _, real in pairs if real) / len(pairs) if pairs else None
    section.data["discovered_name_precision"] = precision
    section.rows.append(
        Row(
            f"discovered names that are real names ({len(pairs)} article-name pairs, {relevant} relevant articles)",
            fmt(precision, 3),
            "",
            f"≥ {PRECISION_TARGET}",
            (precision or 0) >= PRECISION_TARGET,
        )
    )
    if unjudged:
        section.rows.append(Row("names not judged in discovered-labels.yaml (counted wrong)", ", ".join(unjudged)))
    posseg, cut = section.data["posseg_ms_per_chinese_article"], section.data["segment_ms_per_chinese_article"]
    full = section.data["full_posseg_ms_per_chinese_article"]
    section.rows += [
        Row(
            "POS tagging per relevant Chinese article (posseg on unknown words only)",
            fmt(posseg, 1, " ms"),
            f"plain segmentation {fmt(cut, 1, ' ms')} ({fmt(posseg / cut if posseg and cut else None, 1)}×); "
            f"posseg over the whole text {fmt(full, 1, ' ms')} ({fmt(full / cut if full and cut else None, 1)}×)",
        ),
        Row("posseg model load, once per process", fmt(posseg_load_s, 2, " s")),
        Row(
            f"discovery CPU per corpus article (run on the {relevant} relevant of {n})",
            fmt(discover_ms, 2, " ms"),
            f"{fmt(section.data['discovery_share_of_tagging'] and 100 * section.data['discovery_share_of_tagging'], 0)}"
            f"% of tagging ({fmt(tag_ms, 1, ' ms')} per article)",
        ),
    ]
    return section
