"""Image-text matching pairs for a batch: in-batch caption swaps, random or hard.

A `negative_fraction` of the examples get another example's caption (label 0); the rest keep
their own (label 1). Random negatives shift captions by a random non-zero offset (never the own
caption). Hard negatives (a `hard_fraction` of the negatives) take the in-batch caption that shares
the most text tokens with the own caption, which is the closest wrong caption a crawl offers.
Swap negatives (a `swap_fraction` of the negatives) keep the example's own caption but replace one
whole word that the image determines with a word used in the same contexts ("blonde" -> "grey",
`informative_tokens.swap_partners`). The caption stays fluent and the right length, so nothing in
the text alone tells it from a true one: only checking the word against the image does.
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


def partner_table(partners: dict, vocab_size: int) -> np.ndarray:
    """{token: (partner, ...)} -> (vocab_size, k) int array, -1 where a token has fewer partners."""
    k = max((len(v) for v in partners.values()), default=0)
    table = np.full((vocab_size, max(k, 1)), -1, np.int64)
    for t, ps in partners.items():
        table[t, :len(ps)] = ps
    return table


def swap_words(text_ids: np.ndarray, text_lengths: np.ndarray, rows: np.ndarray, table: np.ndarray,
               word_start: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Replace one swappable whole word in each of `rows`; returns new ids and which rows changed.

    A position is swappable when its token has a partner and the next token starts a new word (or
    the caption ends there), so the swapped token is a whole word, never the head of a longer one.
    """
    text_ids = text_ids.copy()
    n, length = text_ids.shape
    ids = np.clip(text_ids, 0, len(table) - 1)
    following = np.concatenate([text_ids[:, 1:], np.zeros((n, 1), text_ids.dtype)], 1)
    ends_word = (np.arange(length)[None] + 1 >= text_lengths[:, None]) | word_start[np.clip(following, 0, len(word_start) - 1)]
    swappable = (table[ids, 0] >= 0) & ends_word & (np.arange(length)[None] < text_lengths[:, None])
    # One uniform draw per row among its swappable positions, then among that token's partners:
    # the largest uniform key over the allowed entries picks one of them uniformly.
    changed = rows & swappable.any(1)
    pos = np.where(swappable, rng.random((n, length)), -1.0).argmax(1)
    options = table[ids[np.arange(n), pos]]                                  # (n, k), -1 = no partner
    pick = np.where(options >= 0, rng.random(options.shape), -1.0).argmax(1)
    replacement = options[np.arange(n), pick]
    text_ids[changed, pos[changed]] = replacement[changed]
    return text_ids, changed


def make_pairs(text_ids: np.ndarray, text_lengths: np.ndarray, rng: np.random.Generator,
               negative_fraction: float = 0.5, hard_fraction: float = 0.0, swap_fraction: float = 0.0,
               swap_table: np.ndarray | None = None, word_start: np.ndarray | None = None) -> dict:
    """Captions re-assigned for ITM: `text_ids`, `text_lengths`, `itm_label` (1 match), `caption_from`
    (whose caption it is) and `swapped` (a swap negative: own caption, one word replaced)."""
    b = len(text_ids)
    source = np.arange(b)
    if b < 2:
        return {"text_ids": text_ids, "text_lengths": text_lengths, "itm_label": np.ones(b, np.int32),
                "caption_from": source, "swapped": np.zeros(b, bool)}
    negative = rng.random(b) < negative_fraction
    shift = rng.integers(1, b)
    source = np.where(negative, (np.arange(b) + shift) % b, source)
    if hard_fraction > 0 and negative.any():
        hard = negative & (rng.random(b) < hard_fraction)
        best = token_overlap(text_ids).argmax(1)
        source = np.where(hard, best, source)
    label = (source == np.arange(b)).astype(np.int32)
    swapped = np.zeros(b, bool)
    out_ids = text_ids[source]
    if swap_fraction > 0 and swap_table is not None and negative.any():
        want = negative & (rng.random(b) < swap_fraction)
        swapped_ids, swapped = swap_words(text_ids, text_lengths, want, swap_table, word_start, rng)
        # a swap negative is its own caption with one word replaced; rows with nothing to swap keep
        # the caption they were given
        out_ids = np.where(swapped[:, None], swapped_ids, out_ids)
        source = np.where(swapped, np.arange(b), source)
    return {"text_ids": out_ids, "text_lengths": text_lengths[source], "itm_label": label,
            "caption_from": source, "swapped": swapped}
