"""What a written SynthFaces split actually contains, measured from its records.

Caption rates are recomputed from the caption text (phrase-bank parsing against the stored
labels), not from the generator's bookkeeping, so the report checks the data as written.
"""
from __future__ import annotations

import numpy as np

from data_pipelines.shards import ShardSource
from data_pipelines.synthfaces.attributes import ATTRIBUTES, EXPRESSIONS, HAIR_COLOURS
from data_pipelines.synthfaces.captions import judge_labels, mentioned_facts


def split_report(source: ShardSource) -> dict:
    """Label prevalences and caption-quality rates of one split."""
    n = len(source)
    attrs = np.zeros((n, len(ATTRIBUTES)), np.int64)
    hair = np.zeros(len(HAIR_COLOURS), np.int64)
    expr = np.zeros(len(EXPRESSIONS), np.int64)
    with_true = with_false = noise = mismatched = 0
    lengths = []
    for i in range(n):
        r = source[i]
        caption = r["caption"].decode("utf-8") if isinstance(r["caption"], bytes) else r["caption"]
        facts = mentioned_facts(caption)
        n_true, n_false = judge_labels(r["attributes"], r["hair_colour"], r["expression"], facts)
        attrs[i] = r["attributes"]
        hair[int(r["hair_colour"])] += 1
        expr[int(r["expression"])] += 1
        with_true += n_true > 0
        with_false += n_false > 0
        noise += not facts
        mismatched += (n_true, n_false) != (int(r["caption_true"]), int(r["caption_false"]))
        lengths.append(len(caption.split()))
    return {
        "records": n,
        "attribute_rate": {a: round(float(v), 4) for a, v in zip(ATTRIBUTES, attrs.mean(0))},
        "hair_colour_rate": {c: round(float(v) / n, 4) for c, v in zip(HAIR_COLOURS, hair)},
        "expression_rate": {e: round(float(v) / n, 4) for e, v in zip(EXPRESSIONS, expr)},
        "caption_share_with_true_fact": round(with_true / n, 4),
        "caption_share_with_false_fact": round(with_false / n, 4),
        "caption_share_without_facts": round(noise / n, 4),
        "caption_words_mean": round(float(np.mean(lengths)), 2),
        # records whose text disagrees with the generator's own count: must be 0
        "caption_bookkeeping_mismatches": mismatched,
    }
