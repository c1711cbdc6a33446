"""How well can a region edit succeed at all, through a tokenizer's codes and the edit's region?

    python bench/diagnostics/edit_ceiling.py JUDGE_DIR VQ_WORKDIR [VQ_WORKDIR ...] [--faces 64]

`gptface eval edits` re-decodes an edit's region tokens and asks the pixel judge whether the target
holds. The best any decoder can do is to write the tokens of the very face the edit asks for: SynthFaces
re-renders each eligible face with the target label flipped (its style unchanged), and the oracle edit
splices that render's codes into the original's within the region, decodes and pastes back as the
editor does. Per edit type it prints the judge on the target renders (its own recall), on the target's
whole reconstruction through each tokenizer, and on the oracle edit, with the mean over edit types.
"""
import argparse
import dataclasses

import numpy as np

from data_pipelines.synthfaces.attributes import EXPRESSIONS, HAIR_COLOURS, sample_face
from data_pipelines.synthfaces.render import render
from gptface_jax.evals import attribute_classifier, edit_eval, face_labels
from gptface_jax.generate import editing
from gptface_jax.serving import image_tokenizer


def target_face(face, edit: str):
    """The face as the edit's caption asks for it; every other label and the style kept."""
    if edit == "smile":
        return dataclasses.replace(face.replace(smiling=True), expression=EXPRESSIONS.index("happy"))
    if edit == "surprised":
        return dataclasses.replace(face.replace(smiling=False, mouth_open=True),
                                   expression=EXPRESSIONS.index("surprised"))
    if edit.startswith("hair_"):
        return dataclasses.replace(face, hair_colour=HAIR_COLOURS.index(edit[len("hair_"):]))
    flips = {"eyeglasses": {"eyeglasses": True, "sunglasses": False}, "beard": {"beard": True},
             "hat": {"hat": True, "bald": False}, "remove_mask": {"surgical_mask": False}}
    return face.replace(**flips[edit])


def faces_for(edit: str, count: int, seed: int, size: int):
    """(originals, targets) rendered, `count` eligible faces drawn from SynthFaces with `seed`."""
    originals, targets, index = [], [], 0
    while len(originals) < count and index < 200 * count:
        face = sample_face(seed, index)
        index += 1
        ok = edit_eval.eligible(face.attribute_vector()[None], edit, np.array([face.hair_colour]),
                                np.array([face.expression]))
        if ok[0]:
            originals.append(render(face, size))
            targets.append(render(target_face(face, edit), size))
    return np.stack(originals), np.stack(targets)


def main(judge_dir: str, vq_dirs: list[str], faces: int, seed: int) -> None:
    judge = attribute_classifier.load(judge_dir)
    size = int(judge.info["image_size"])
    tokenizers = {d: image_tokenizer.load(d) for d in vq_dirs}
    columns = ["target rendered"] + [f"{kind} {d}" for d in vq_dirs for kind in ("whole target", "oracle edit")]
    table = {}
    for edit, (region_names, _, target) in edit_eval.EDITS.items():
        originals, targets = faces_for(edit, faces, seed, size)
        row = [face_labels.holds(judge.predict_all(targets), target).mean()]
        for vq in tokenizers.values():
            grid = vq.config.image_size // vq.config.downsample
            region = editing.token_mask_for(list(region_names), grid=grid, size=size)
            source, wanted = vq.encode(originals), vq.encode(targets)
            spliced = np.where(region[None], wanted, source)
            pasted = np.stack([editing.paste_back(editing.Photo.of_crop(o), d, region)
                               for o, d in zip(originals, vq.decode(spliced))])
            row += [face_labels.holds(judge.predict_all(vq.decode(wanted)), target).mean(),
                    face_labels.holds(judge.predict_all(pasted), target).mean()]
        table[edit] = row
    print(f"{faces} eligible SynthFaces faces per edit (seed {seed}); judge {judge_dir}\n")
    print("| edit | " + " | ".join(columns) + " |")
    print("| --- | " + " | ".join("---" for _ in columns) + " |")
    for edit, row in table.items():
        print(f"| {edit} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    print("| mean | " + " | ".join(f"{v:.3f}" for v in np.mean(list(table.values()), 0)) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("judge_dir")
    parser.add_argument("vq_dirs", nargs="+")
    parser.add_argument("--faces", type=int, default=64)
    parser.add_argument("--seed", type=int, default=99)
    args = parser.parse_args()
    main(args.judge_dir, args.vq_dirs, args.faces, args.seed)
