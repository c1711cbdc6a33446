"""Image-text matching pairs for a batch: in-batch caption swaps, random or hard.

A `negative_fraction` of the examples get another example's caption (label 0); the rest keep
their own (label 1). Random negatives shift captions by a random non-zero offset (never the own
caption). Hard negatives (a `hard_fraction` of the negatives) take the in-batch caption that shares
the most text tokens with the own caption, which is the closest wrong caption a crawl offers.
ITM negatives mined from the contrastive similarities are drawn in the train step
(`gptface_jax/train/negatives.py`).
Masked modelling is scored on positives only, so negatives' masks are cleared by the caller.
"""
from __future__ import annotations

import numpy as np

from data_pipelines.text_tokenizer import NUM_SPECIAL


def token_overlap(text_ids: np.ndarray) -> np.ndarray:
    """(B, B) count of shared distinct non-special tokens between captions (diagonal set to -1)."""
    b = len(text_ids)
    vocab = int(text_ids.max()) + 1 if text_ids.size else 1
    bag = np.zeros((b, vocab), bool)
    rows = np.repeat(np.arange(b), text_ids.shape[1])
    ids = text_ids.reshape(-1)
    keep = ids >= NUM_SPECIAL
    bag[rows[keep], ids[keep]] = True
    overlap = bag.astype(np.int32) @ bag.T.astype(np.int32)
    np.fill_diagonal(overlap, -1)
    return overlap


def make_pairs(text_ids: np.ndarray, text_lengths: np.ndarray, rng: np.random.Generator,
               negative_fraction: float = 0.5, hard_fraction: float = 0.0) -> dict:
    """Captions re-assigned for ITM: `text_ids`, `text_lengths`, `itm_label` (1 match) and
    `caption_from` (whose caption it is)."""
    b = len(text_ids)
    source = np.arange(b)
    if b < 2:
        return {"text_ids": text_ids, "text_lengths": text_lengths, "itm_label": np.ones(b, np.int32),
                "caption_from": source}
    negative = rng.random(b) < negative_fraction
    shift = rng.integers(1, b)
    source = np.where(negative, (np.arange(b) + shift) % b, source)
    if hard_fraction > 0 and negative.any():
        hard = negative & (rng.random(b) < hard_fraction)
        best = token_overlap(text_ids).argmax(1)
        source = np.where(hard, best, source)
    label = (source == np.arange(b)).astype(np.int32)
    return {"text_ids": text_ids[source], "text_lengths": text_lengths[source], "itm_label": label,
            "caption_from": source}
