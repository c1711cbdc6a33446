"""Held-out image-text matching: accuracy and AUC on the clean and the weakly correlated splits.

The judge sees whole captions and whole images (no masking). Pairs come from
`data_pipelines.synthfaces.eval_pairs`; a dataset without SynthFaces-style labels (an ingested
crawl) gets the weak split only. Batches are padded to a fixed size so the scorer compiles once.
"""
from __future__ import annotations

import jax
import numpy as np

from data_pipelines.shards import ShardSource
from data_pipelines.synthfaces.attributes import ATTRIBUTES
from data_pipelines.synthfaces.eval_pairs import clean_pairs, weak_pairs
from gptface_jax import sharding


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
    caption = lambda r: r["caption"].decode("utf-8") if isinstance(r["caption"], bytes) else str(r["caption"])  # noqa: E731
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
    n = len(text_ids)
    pad = -n % batch_size
    text = np.concatenate([text_ids, np.repeat(text_ids[:1], pad, 0)])
    image = np.concatenate([image_codes, np.repeat(image_codes[:1], pad, 0)])
    local = batch_size // jax.process_count()
    lo = jax.process_index() * local
    probs = []
    for start in range(0, len(text), batch_size):
        rows = slice(start + lo, start + lo + local)  # this process's block of the global batch
        batch = sharding.to_global({"t": text[rows], "i": image[rows]}, mesh, config)
        logits = np.asarray(jax.device_get(score_fn(params, batch["t"], batch["i"])), np.float32)
        probs.append(np.exp(logits[:, 1] - np.logaddexp(logits[:, 0], logits[:, 1])))
    return np.concatenate(probs)[:n]


def eval_sets(source: ShardSource, max_examples: int) -> dict[str, dict]:
    """{'weak': ..., 'clean': ...} each {'text_ids', 'image_codes', 'label'}; built once per run."""
    split = load_split(source, max_examples)
    n = len(split["captions"])
    pairs = {"weak": weak_pairs(n)}
    if "attributes" in split:
        pairs["clean"] = clean_pairs(split["captions"], split["attributes"], split["hair_colour"], split["expression"])
    return {name: {"text_ids": split["text_ids"][p["caption"]], "image_codes": split["image_codes"][p["image"]],
                   "label": p["label"]} for name, p in pairs.items() if len(p["label"])}


def evaluate(score_fn, params, sets: dict, mesh, config, batch_size: int) -> dict:
    """eval_itm_{clean,weak}_{accuracy,auc,pairs}; `score_fn` must return replicated logits."""
    scores = {}
    for name, s in sets.items():
        prob = match_probabilities(score_fn, params, s["text_ids"], s["image_codes"], mesh, config, batch_size)
        scores[f"eval_itm_{name}_accuracy"] = float(((prob > 0.5) == s["label"]).mean())
        scores[f"eval_itm_{name}_auc"] = auc(prob, s["label"])
        scores[f"eval_itm_{name}_pairs"] = int(len(s["label"]))
    return scores
