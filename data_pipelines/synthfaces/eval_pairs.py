"""Held-out image-text matching pairs: a clean split and the weakly correlated one.

clean  positives: an image with its own caption when that caption states at least two facts and
       all of them hold; negatives: an image with another example's caption that contradicts at
       least one visible fact of the image. Facts are read back from the caption text
       (`captions.mentioned_facts`), so the split needs only stored captions and labels.
weak   every image with its own caption, whatever it says (noise captions included), and with a
       random other caption: the crawl's own, loose correlation.

Both are balanced and drawn from a seeded generator. Hair colour is not visible on a bald or
hatted face, so it never makes a pair clean.
"""
from __future__ import annotations

import numpy as np

from data_pipelines.synthfaces.attributes import ATTRIBUTES
from data_pipelines.synthfaces.captions import judge_labels, mentioned_facts

_BALD, _HAT = ATTRIBUTES.index("bald"), ATTRIBUTES.index("hat")


def visible_verdict(facts, attributes, hair_colour: int, expression: int) -> tuple[int, int]:
    """(true, false) counts of a caption's facts against what one face shows."""
    if attributes[_BALD] or attributes[_HAT]:
        facts = [f for f in facts if f[0] != "hair_colour"]
    return judge_labels(attributes, hair_colour, expression, facts)


def clean_pairs(captions, attributes, hair_colours, expressions, seed: int = 0) -> dict:
    """Balanced clean pairs: {'image': idx, 'caption': idx, 'label': 0/1} arrays."""
    n = len(captions)
    rng = np.random.default_rng(seed)
    facts = [mentioned_facts(c) for c in captions]
    def verdict(i, j):
        return visible_verdict(facts[j], attributes[i], hair_colours[i], expressions[i])
    positives = [i for i in range(n) if (lambda t, f: t >= 2 and f == 0)(*verdict(i, i))]
    negatives = []
    for i in rng.permutation(n):
        if len(negatives) == len(positives):
            break
        for j in rng.permutation(n)[:32]:  # a few tries: most other captions contradict something
            if j != i and verdict(i, j)[1] >= 1:
                negatives.append((int(i), int(j)))
                break
    return _pairs([(i, i) for i in positives[:len(negatives)]], negatives)


def weak_pairs(n: int, seed: int = 0) -> dict:
    """Every image with its own caption (label 1) and with a random other one (label 0)."""
    if n < 2:
        return _pairs([], [])
    others = (np.arange(n) + np.random.default_rng(seed).integers(1, n, size=n)) % n
    return _pairs([(i, i) for i in range(n)], [(i, int(j)) for i, j in enumerate(others)])


def _pairs(positive: list[tuple[int, int]], negative: list[tuple[int, int]]) -> dict:
    both = positive + negative
    return {"image": np.array([i for i, _ in both], np.int64),
            "caption": np.array([j for _, j in both], np.int64),
            "label": np.array([1] * len(positive) + [0] * len(negative), np.int32)}
