"""Held-out image-text matching: accuracy and AUC on the clean and the weakly correlated splits.

The judge sees whole captions and whole images (no masking). Pairs come from
`data_pipelines.synthfaces.eval_pairs`; a dataset without SynthFaces-style labels (an ingested
crawl) gets the weak split only. Batches are padded to a fixed size so the scorer compiles once.
"""
from __future__ import annotations

import numpy as np

from data_pipelines.shards import ShardSource
from data_pipelines.synthfaces.attributes import ATTRIBUTES
from data_pipelines.synthfaces.eval_pairs import clean_pairs, weak_pairs
from gptface_jax.runtime import sharding


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by the rank statistic (ties averaged)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    _, value_of, counts = np.unique(np.concatenate([pos, neg]), return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    ranks = ((last - counts + 1 + last) / 2)[value_of]  # tied scores share their mean rank
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def load_split(source: ShardSource, max_examples: int) -> dict:
    """The first `max_examples` held-out records as arrays (captions as str)."""
    records = [source[i] for i in range(min(len(source), max_examples))]
    def caption(r):
        return r["caption"].decode("utf-8") if isinstance(r["caption"], bytes) else str(r["caption"])
    out = {"text_ids": np.stack([np.asarray(r["text_ids"], np.int32) for r in records]),
           "image_codes": np.stack([np.asarray(r["image_codes"], np.int32) for r in records]),
           "captions": [caption(r) for r in records]}
    if records and np.asarray(records[0].get("attributes", ())).shape == (len(ATTRIBUTES),):  # SynthFaces labels
        out["attributes"] = np.stack([np.asarray(r["attributes"], np.int8) for r in records])
        out["hair_colour"] = np.array([int(r["hair_colour"]) for r in records])
        out["expression"] = np.array([int(r["expression"]) for r in records])
    return out


def match_probabilities(score_fn, params, text_ids, image_codes, mesh, config, batch_size: int) -> np.ndarray:
    """P(match) for each (text, image) row; `score_fn(params, text, image)` returns ITM logits."""
    (logits,) = _rows(lambda p, t, i: (score_fn(p, t, i),), params, [text_ids, image_codes], mesh, config, batch_size)
    return np.exp(logits[:, 1] - np.logaddexp(logits[:, 0], logits[:, 1]))


def pair_indices(split: dict) -> dict[str, dict]:
    """{'weak': ..., 'clean': ...} pairs of a `load_split` result as (image, caption, label) index
    arrays; 'clean' only where the split has SynthFaces labels."""
    pairs = {"weak": weak_pairs(len(split["captions"]))}
    if "attributes" in split:
        pairs["clean"] = clean_pairs(split["captions"], split["attributes"], split["hair_colour"], split["expression"])
    return pairs


def eval_sets(source: ShardSource, max_examples: int) -> dict[str, dict]:
    """{'weak': ..., 'clean': ...} each {'text_ids', 'image_codes', 'label'}, and 'captions' (the
    held-out pairs as they are, for `caption_image_gain`); built once per run."""
    split = load_split(source, max_examples)
    pairs = pair_indices(split)
    sets = {name: {"text_ids": split["text_ids"][p["caption"]], "image_codes": split["image_codes"][p["image"]],
                   "label": p["label"]} for name, p in pairs.items() if len(p["label"])}
    sets["captions"] = {"text_ids": split["text_ids"], "image_codes": split["image_codes"]}
    return sets


def _rows(fn, params, arrays: list[np.ndarray], mesh, config, batch_size: int) -> list[np.ndarray]:
    """`fn(params, *batch)` over fixed-size global batches; each output as float32, cut to the rows."""
    outs = sharding.run_in_batches(lambda *batch: fn(params, *batch), arrays, batch_size,
                                   sharding.global_batch_put(mesh, config))
    return [np.asarray(o, np.float32) for o in outs]


def caption_image_gain(caption_fn, params, captions: dict, mesh, config, batch_size: int, hidden=None,
                       name: str = "caption") -> dict:
    """How much the image tells the model about the hidden caption tokens, in nats per hidden token.

    `hidden` (bool, like the text ids; default every caption token: text generation from the image
    alone) marks the positions that are masked and scored; `caption_fn(params, text, image, hidden)`
    returns each row's summed NLL over them and their count. The same captions are scored with their
    own images and with the images shifted by one row: a model that ignores the image scores both
    alike (gain 0), one that reads it loses when the images are swapped.
    """
    text, image = captions["text_ids"], captions["image_codes"]
    hidden = text != 0 if hidden is None else hidden
    own_nll, count = _rows(caption_fn, params, [text, image, hidden], mesh, config, batch_size)
    other_nll, _ = _rows(caption_fn, params, [text, np.roll(image, 1, axis=0), hidden], mesh, config, batch_size)
    return _gain(own_nll, other_nll, count, name, "image")


def image_caption_gain(image_fn, params, captions: dict, mesh, config, batch_size: int) -> dict:
    """The other direction: how much the caption tells the model about the image, in nats per image token.

    Every image token is masked (image generation from the caption alone); `image_fn(params, text,
    image)` returns each row's summed NLL of the image codes and their count. Scored with the own
    captions and with the captions shifted by one row (0 for a model that ignores the text).
    """
    text, image = captions["text_ids"], captions["image_codes"]
    own_nll, count = _rows(image_fn, params, [text, image], mesh, config, batch_size)
    other_nll, _ = _rows(image_fn, params, [np.roll(text, 1, axis=0), image], mesh, config, batch_size)
    return _gain(own_nll, other_nll, count, "image", "caption")


def _gain(own_nll, other_nll, count, name: str, other: str) -> dict:
    tokens = max(float(count.sum()), 1.0)
    own, swapped = float(own_nll.sum()) / tokens, float(other_nll.sum()) / tokens
    return {f"eval_{name}_nll": own, f"eval_{name}_nll_other_{other}": swapped,
            f"eval_{name}_{other}_gain": swapped - own}


def evaluate(score_fn, params, sets: dict, mesh, config, batch_size: int, caption_fn=None, image_fn=None) -> dict:
    """eval_itm_{clean,weak}_{accuracy,auc,pairs} (+ the caption image gain with `caption_fn`, the
    image caption gain with `image_fn`); the functions must return replicated outputs."""
    scores = {}
    if image_fn is not None and "captions" in sets:
        scores.update(image_caption_gain(image_fn, params, sets["captions"], mesh, config, batch_size))
    if caption_fn is not None and "captions" in sets:
        scores.update(caption_image_gain(caption_fn, params, sets["captions"], mesh, config, batch_size))
    for name, s in sets.items():
        if name == "captions":
            continue
        prob = match_probabilities(score_fn, params, s["text_ids"], s["image_codes"], mesh, config, batch_size)
        scores[f"eval_itm_{name}_accuracy"] = float(((prob > 0.5) == s["label"]).mean())
        scores[f"eval_itm_{name}_auc"] = auc(prob, s["label"])
        scores[f"eval_itm_{name}_pairs"] = int(len(s["label"]))
    return scores
