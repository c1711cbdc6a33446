"""Do unconditional samples reproduce the data's attribute rates? Sampler settings side by side.

    python bench/diagnostics/sampler_marginals.py W JUDGE_DIR [--samples 128] [--seed 0]

Faces are generated from empty text (all [PAD], the classifier-free branch) and from the neutral
caption, under several decoding settings, and judged by the same pixel classifier as the edits.
The reference is the judge on VQ reconstructions of held-out faces: what a sampler that matched
the data would score. A gap that moves with the sampler settings is the sampler's (confidence-
ordered unmasking is mode-seeking); a gap that does not is the model's.
"""
import argparse
import dataclasses
import json

import jax
import numpy as np

from data_pipelines.text_tokenizer import PAD
from gptface_jax.evals import attribute_classifier, face_labels, text_to_face_eval
from gptface_jax.evals.downstream import load_labelled
from gptface_jax.generate import decoding
from gptface_jax.generate.decode_config import DecodeConfig
from gptface_jax.serving import inference

JUDGED = ["male", "smiling", "eyeglasses", "beard", "hat", "surgical_mask", "hair:black", "hair:blond"]
SETTINGS = {  # name: DecodeConfig overrides
    "default (T12, noise 4.5)": {},
    "noise 0": {"confidence_noise": 0.0},
    "noise 20": {"confidence_noise": 20.0},
    "random order (noise 1e4)": {"confidence_noise": 1e4},
    "T 32": {"steps": 32},
    "T 64": {"steps": 64},
    "random order, T 64": {"steps": 64, "confidence_noise": 1e4},
    "temperature 1.2": {"temperature": 1.2},
}


def distinct_codes(codes) -> float:
    """Mean number of distinct codes per face: how varied each face is."""
    return float(np.mean([len(np.unique(c)) for c in codes]))


def rates(judge, images) -> dict:
    predictions = judge.predict_all(images)
    return {name: float(face_labels.holds(predictions, name).mean()) for name in JUDGED}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("judge")
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS))
    args = parser.parse_args()
    pretrained = inference.load(args.workdir)
    judge = attribute_classifier.load(args.judge)
    dataset = pretrained.source_dataset()
    test = load_labelled(dataset, "test", pretrained.image_size, max_examples=500)
    real_codes = pretrained.image_codes(test["images"])
    reference = {**rates(judge, pretrained.images(real_codes)),
                 "distinct_codes": distinct_codes(real_codes)}
    print("data (judge on reconstructions):", json.dumps({k: round(v, 3) for k, v in reference.items()}))
    n = args.samples
    mask = np.ones((n, pretrained.grid ** 2), bool)
    blank = np.zeros((n, pretrained.grid ** 2), np.int32)
    texts = {"empty": np.full((n, pretrained.model.config.max_text_len), PAD, np.int32),
             "neutral": np.repeat(pretrained.text_ids([text_to_face_eval.NEUTRAL]), n, 0)}
    rows = [{"setting": "data", "text": "-", **reference}]
    for name in args.settings:
        decoder = decoding.make_decoder(pretrained.model, decoding.IMAGE,
                                        dataclasses.replace(DecodeConfig(), **SETTINGS[name]))
        for text_name, text in texts.items():
            _, codes = decoder(pretrained.params, text, blank, mask, jax.random.PRNGKey(args.seed))
            codes = np.asarray(codes)
            row = {"setting": name, "text": text_name, **rates(judge, pretrained.images(codes)),
                   "distinct_codes": distinct_codes(codes)}
            rows.append(row)
            print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    print("\n| setting | text | " + " | ".join(JUDGED) + " | distinct codes / face |")
    print("| --- | --- | " + " | ".join("---" for _ in JUDGED) + " | --- |")
    for r in rows:
        print(f"| {r['setting']} | {r['text']} | " + " | ".join(f"{r[k]:.2f}" for k in JUDGED)
              + f" | {r.get('distinct_codes', float('nan')):.1f} |")


if __name__ == "__main__":
    main()
