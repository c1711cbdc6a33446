"""`gptface eval edits`: how well attribute edits work, judged by a classifier that never saw the generator.

For each edit type, held-out SynthFaces faces that lack the target attribute are edited (the
region's tokens re-decoded for the caption) at every setting of the two guidance switches (ITM
guidance lambda x classifier-free scale w), with the same seed. Per (edit, lambda, w):
  success        the judge (attribute_classifier, trained on rendered pixels) says the target holds
  success_before the same judge on the unedited faces (its false-positive floor)
  success_neutral the same region re-decoded for the neutral "a photo of a person" (no negative caption),
                 same seed: what re-drawing the region alone makes the judge say
  lift           success - success_neutral: what the caption adds (0 for a caption-blind model). On
                 run q10 the glasses and smile edits read as often after a neutral re-draw as after
                 their own caption (docs/experiments.md, run ec1)
  psnr_outside   PSNR of the edited crop against the original over the pixels of unmasked tokens
                 (the paste-back's half-cell fade included), dB
  unchanged_tokens  fraction of unmasked tokens the decoder left as they were (must be 1.0)
  itm            mean ITM match log-odds of (caption, edited image)
Faces are batched through one jitted decoder per setting.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os

import jax
import numpy as np

from gptface_jax.evals import attribute_classifier, face_labels, text_to_face_eval
from gptface_jax.evals.downstream import load_labelled
from gptface_jax.generate import decoding, editing
from gptface_jax.generate.decode_config import MASK_NEGATIVE, DecodeConfig, default_config, guidance_grid
from gptface_jax.runtime import layout

# name: (regions, caption in the corpus' own phrasing, the label the edit makes hold: face_labels names,
# so "hair:<colour>" and "expression:<name>" are judged by the judge's hair-colour and expression heads)
EDITS = {
    "smile": (("mouth",), "a smiling person", "smiling"),
    "surprised": (("expression",), "a person looking surprised", "expression:surprised"),
    "eyeglasses": (("eyes",), "a person wearing glasses", "eyeglasses"),
    "beard": (("lower-face",), "a man with a beard", "beard"),
    "hat": (("hair",), "a person wearing a hat", "hat"),
    "remove_mask": (("lower-face",), "a photo of a person", "not:surgical_mask"),
    "hair_black": (("hair",), "a person with black hair", "hair:black"),
    "hair_blond": (("hair",), "a person with blond hair", "hair:blond"),
}
# the caption an edit steers away from (decoding's negative control): what a removal removes
NEGATIVES = {"remove_mask": MASK_NEGATIVE}
_VISIBLE_HAIR = ("not:bald", "not:hat")
# what else must hold for the edit to show: beards go on men, a hair colour on visible hair, an
# expression on a face whose mouth no mask hides
REQUIRES = {"beard": ("male",), "hair_black": _VISIBLE_HAIR, "hair_blond": _VISIBLE_HAIR,
            "surprised": ("not:surgical_mask",)}


def eligible(attributes: np.ndarray, edit: str, hair_colour: np.ndarray | None = None,
             expression: np.ndarray | None = None) -> np.ndarray:
    """Faces an edit can change: its target is known not to hold yet, and REQUIRES holds. No face
    without the labels the edit needs (no hair-colour labels for a hair edit, say)."""
    truth = face_labels.labels_as_predictions(attributes, hair_colour, expression)
    lacking = face_labels.holds(truth, face_labels.NOT + EDITS[edit][2])
    if lacking is None:
        return np.zeros(len(attributes), bool)
    for needed in REQUIRES.get(edit, ()):
        lacking &= face_labels.holds(truth, needed)
    return lacking


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64)[where] - b.astype(np.float64)[where]) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _redraw(pretrained, decoder, crops, codes, token_mask, seed, caption_ids, negative_ids):
    """The region's tokens re-decoded for a caption and pasted back: (edited crops, all their tokens)."""
    mask = np.repeat(token_mask.reshape(1, -1), len(crops), 0)
    _, out = decoder(pretrained.params, caption_ids, codes, mask, jax.random.PRNGKey(seed), negative_ids)
    out = np.asarray(out)
    edited = np.stack([editing.paste_back(editing.Photo.of_crop(c), d, token_mask)
                       for c, d in zip(crops, pretrained.images(out))])
    return edited, out


def evaluate(pretrained, judge, images: np.ndarray, attributes: np.ndarray, *, guidances=(0.0, 2.0),
             cfg_scales=(0.0,), faces_per_edit: int = 16, seed: int = 0, config: DecodeConfig = DecodeConfig(),
             hair_colour: np.ndarray | None = None, expression: np.ndarray | None = None) -> list[dict]:
    size, grid = pretrained.image_size, pretrained.grid
    score = jax.jit(lambda p, t, i: decoding.itm_score(pretrained.model, p, t, i))
    decoders = {(g, w): decoding.make_decoder(pretrained.model, decoding.IMAGE,
                                              dataclasses.replace(config, guidance=g, cfg_scale=w))
                for g, w in guidance_grid(guidances, cfg_scales)}
    rows = []
    for edit, (region_names, caption, target) in EDITS.items():
        chosen = np.flatnonzero(eligible(attributes, edit, hair_colour, expression))[:faces_per_edit]
        before = face_labels.holds(judge.predict_all(images[chosen]), target) if len(chosen) else None
        if before is None:  # no eligible face, or a judge without the head this edit needs
            continue
        crops = images[chosen]
        token_mask = editing.token_mask_for(list(region_names), grid=grid, size=size)
        cell = size // grid
        outside = ~np.repeat(np.repeat(token_mask, cell, 0), cell, 1)  # pixels of unmasked tokens
        codes = pretrained.image_codes(crops)
        text = np.repeat(pretrained.text_ids([caption]), len(chosen), 0)
        negative = np.repeat(pretrained.text_ids([NEGATIVES[edit]]), len(chosen), 0) if edit in NEGATIVES else None
        neutral = np.repeat(pretrained.text_ids([text_to_face_eval.NEUTRAL]), len(chosen), 0)
        for (g, w), decoder in decoders.items():
            redraw = functools.partial(_redraw, pretrained, decoder, crops, codes, token_mask, seed)
            edited, out = redraw(text, negative)
            after = face_labels.holds(judge.predict_all(edited), target)
            control = face_labels.holds(judge.predict_all(redraw(neutral, None)[0]), target)
            rows.append({
                "edit": edit, "guidance": g, "cfg_scale": w, "faces": int(len(chosen)), "caption": caption,
                "negative": NEGATIVES.get(edit),
                "success": float(after.mean()), "success_before": float(before.mean()),
                "success_neutral": float(control.mean()), "lift": float(after.mean() - control.mean()),
                "psnr_outside": float(np.mean([psnr(e, c, outside) for e, c in zip(edited, crops)])),
                "unchanged_tokens": float((out[:, ~token_mask.reshape(-1)] == codes[:,
                                                                                    ~token_mask.reshape(-1)]).mean()),
                "itm": float(np.mean(np.asarray(score(pretrained.params, text, out)))),
            })
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [f"| edit | guidance | cfg | faces | success | success ('{text_to_face_eval.NEUTRAL}') | lift "
             "| success before | PSNR outside (dB) | unchanged tokens | ITM log-odds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['edit']} | {r['guidance']:g} | {r['cfg_scale']:g} | {r['faces']} | {r['success']:.3f} "
                     f"| {r['success_neutral']:.3f} | {r['lift']:+.3f} | {r['success_before']:.3f} | "
                     f"{r['psnr_outside']:.2f} | {r['unchanged_tokens']:.4f} | {r['itm']:.3f} |")
    for g, w in dict.fromkeys((r["guidance"], r["cfg_scale"]) for r in rows):
        at = [r for r in rows if (r["guidance"], r["cfg_scale"]) == (g, w)]
        lines.append(f"| mean | {g:g} | {w:g} | | {np.mean([r['success'] for r in at]):.3f} "
                     f"| {np.mean([r['success_neutral'] for r in at]):.3f} | {np.mean([r['lift'] for r in at]):+.3f} "
                     "| | | | |")
    return "\n".join(lines) + "\n"


def _draws(config: DecodeConfig) -> str:
    return "one draw each" if config.candidates == 1 else f"the best of {config.candidates} by ITM"


def run(workdir: str, dataset_dir: str | None = None, judge_dir: str | None = None, out_dir: str | None = None, *,
        guidances=(0.0, 2.0), cfg_scales=(0.0,), faces_per_edit: int = 16, seed: int = 0, judge_steps: int = 1500,
        text_to_face_samples: int = 32, config: DecodeConfig = DecodeConfig(),
        text_to_face_cfg_scales=(default_config("generate").cfg_scale,),
        text_to_face_config: DecodeConfig = default_config("generate")) -> dict:
    """Loads (or first trains) the judge, edits held-out faces with `config` and generates faces from
    captions with `text_to_face_config` (text_to_face_eval; by default `gptface generate`'s sampler, which
    the text-to-face figures describe), writes edits_eval.json/.md; returns the report."""
    from gptface_jax.serving import inference
    pretrained = inference.load(workdir)
    dataset_dir = dataset_dir or pretrained.source_dataset()
    judge_dir = judge_dir or os.path.join(workdir, layout.JUDGE)
    if os.path.isfile(os.path.join(judge_dir, attribute_classifier.INFO_FILE)):
        judge = attribute_classifier.load(judge_dir)
    else:
        judge = attribute_classifier.train(dataset_dir, judge_dir, steps=judge_steps, vq=pretrained.vq)
    test = load_labelled(dataset_dir, "test", pretrained.image_size)
    rows = evaluate(pretrained, judge, test["images"], test["attributes"], guidances=guidances, cfg_scales=cfg_scales,
                    faces_per_edit=faces_per_edit, seed=seed, hair_colour=test.get("hair_colour"),
                    expression=test.get("expression"), config=config)
    generated = text_to_face_eval.evaluate(pretrained, judge, guidances=guidances,
                                           cfg_scales=text_to_face_cfg_scales, samples=text_to_face_samples,
                                           seed=seed, config=text_to_face_config)
    report = {"workdir": workdir, "dataset": dataset_dir, "judge": judge.info, "decoding": dataclasses.asdict(config),
              "rows": rows, "text_to_face_decoding": dataclasses.asdict(text_to_face_config),
              "text_to_face": generated}
    out_dir = out_dir or workdir
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, layout.EDITS_EVAL + ".json"), "w") as f:
        json.dump(report, f, indent=1)
    table = (f"Edits (held-out faces, {faces_per_edit} per edit, {_draws(config)}):\n\n{markdown(rows)}\n"
             f"Text-to-face ({text_to_face_samples} faces per caption, {_draws(text_to_face_config)}):\n\n"
             f"{text_to_face_eval.markdown(generated)}")
    with open(os.path.join(out_dir, layout.EDITS_EVAL + ".md"), "w") as f:
        f.write(table)
    return {**report, "markdown": table}
