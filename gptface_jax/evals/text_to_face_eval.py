"""Does text-to-face follow the text? Faces generated for a caption that names an attribute, judged.

For each attribute, `samples` faces are generated from scratch (every image token masked) for a
caption naming it in the corpus' own phrasing, and as many for a neutral caption; the attribute
classifier that judges edits (trained on rendered pixels, never on the generator) says how often
the attribute holds in each set. Per (attribute, ITM guidance lambda, classifier-free scale w):
  named    rate among faces generated for the naming caption
  neutral  rate among faces generated for the neutral caption
  lift     named - neutral (> 0: the text moved the faces towards the attribute)
  itm      mean ITM match log-odds of (naming caption, its faces)
Every caption's faces use the same seed, so a caption-blind generator gives lift 0 exactly.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from gptface_jax.evals.face_labels import holds
from gptface_jax.generate import decoding
from gptface_jax.generate.decode_config import DecodeConfig, guidance_grid

NEUTRAL = "a photo of a person"
# attribute: a caption that names it (the corpus' phrasing)
PROMPTS = {
    "male": "a photo of a man",
    # "not:<attribute>": the caption names its absence (judged as the attribute not holding)
    "not:male": "a photo of a woman",
    "smiling": "a smiling person",
    "eyeglasses": "a person wearing glasses",
    "sunglasses": "a person wearing sunglasses",
    "beard": "a man with a beard",
    "bald": "a bald man",
    "hat": "a person wearing a hat",
    "surgical_mask": "a person wearing a face mask",
    # hair colours: judged by the judge's hair-colour head (the most probable colour), when it has one
    "hair:black": "a person with black hair",
    "hair:blond": "a person with blond hair",
    "hair:red": "a person with red hair",
    "hair:grey": "a person with grey hair",
    # expressions: judged by the judge's expression head (the most probable of the five)
    "expression:happy": "a person looking happy",
    "expression:surprised": "a person looking surprised",
}


def evaluate(pretrained, judge, *, guidances=(0.0, 2.0), cfg_scales=(0.0,), samples: int = 32, seed: int = 0,
             config: DecodeConfig = DecodeConfig()) -> list[dict]:
    n_tokens = pretrained.grid ** 2
    mask = np.ones((samples, n_tokens), bool)
    blank = np.zeros((samples, n_tokens), np.int32)
    score = jax.jit(lambda p, t, i: decoding.itm_score(pretrained.model, p, t, i))
    rows = []
    for g, w in guidance_grid(guidances, cfg_scales):
        decoder = decoding.make_decoder(pretrained.model, decoding.IMAGE,
                                        dataclasses.replace(config, guidance=g, cfg_scale=w))

        def generate(caption: str, decoder=decoder):
            text = np.repeat(pretrained.text_ids([caption]), samples, 0)
            _, codes = decoder(pretrained.params, text, blank, mask, jax.random.PRNGKey(seed))
            codes = np.asarray(codes)
            return text, codes, judge.predict_all(pretrained.images(codes))

        _, _, neutral = generate(NEUTRAL)
        for name, caption in PROMPTS.items():
            if holds(neutral, name) is None:
                continue
            text, codes, named = generate(caption)
            rate, base = float(holds(named, name).mean()), float(holds(neutral, name).mean())
            rows.append({"attribute": name, "guidance": g, "cfg_scale": w, "samples": samples, "caption": caption,
                         "named": rate, "neutral": base, "lift": rate - base,
                         "itm": float(np.mean(np.asarray(score(pretrained.params, text, codes))))})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [f"| attribute | guidance | cfg | samples | named caption | rate (named) | rate ('{NEUTRAL}') | lift "
             "| ITM log-odds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['attribute']} | {r['guidance']:g} | {r['cfg_scale']:g} | {r['samples']} | {r['caption']} "
                     f"| {r['named']:.3f} | "
                     f"{r['neutral']:.3f} | {r['lift']:+.3f} | {r['itm']:.3f} |")
    return "\n".join(lines) + "\n"
