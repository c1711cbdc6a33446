"""Which attributes can a generated face show at all through a tokenizer's codes?

    python bench/diagnostics/judge_on_tokens.py JUDGE_DIR SYNTH_DIR VQ_WORKDIR [VQ_WORKDIR ...]

Text-to-face and edits are judged from pixels by the attribute judge (gptface_jax.evals.attribute_classifier).
A face made of image tokens is at best the VQ reconstruction of a real face, so the judge's accuracy on the
held-out faces' reconstructions bounds what it can read in any generated face: where it falls to the majority
rate, no caption can lift that attribute through these codes. Prints the judge on the rendered faces, on
each tokenizer's reconstructions and the majority rate, per attribute, for expression and for hair colour.
"""
import sys

import numpy as np

from gptface_jax.evals import attribute_classifier
from gptface_jax.evals.downstream import load_labelled
from gptface_jax.serving import image_tokenizer


def majority(labels: np.ndarray) -> np.ndarray:
    """Per column: the share of the more common of the known binary values."""
    known = labels >= 0
    ones = ((labels == 1) & known).sum(0) / np.maximum(known.sum(0), 1)
    return np.maximum(ones, 1 - ones)


def main(judge_dir: str, data: str, vq_dirs: list[str]) -> None:
    judge = attribute_classifier.load(judge_dir)
    test = load_labelled(data, "test", int(judge.info["image_size"]))
    columns = {"rendered": test["images"]}
    for vq_dir in vq_dirs:
        vq = image_tokenizer.load(vq_dir)
        grid = vq.config.image_size // vq.config.downsample
        columns[f"{vq_dir} ({grid}x{grid})"] = vq.decode(vq.encode(test["images"]))
    scores = {name: judge.accuracy(images, test["attributes"], test["expression"], test["hair_colour"])
              for name, images in columns.items()}
    rows = dict(zip(test["attribute_names"], majority(test["attributes"])))
    print(f"{len(test['images'])} held-out faces of {data}; judge {judge_dir}\n")
    print("| label | majority | " + " | ".join(scores) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in scores) + " |")
    for name, base in rows.items():
        print(f"| {name} | {base:.3f} | " + " | ".join(f"{s['attributes'][name]:.3f}" for s in scores.values()) + " |")
    expression_base = np.bincount(test["expression"][test["expression"] >= 0]).max() / (test["expression"] >= 0).sum()
    print(f"| expression | {expression_base:.3f} | "
          + " | ".join(f"{s['expression_accuracy']:.3f}" for s in scores.values()) + " |")
    print("| hair colour | - | " + " | ".join(f"{s['hair_colour_accuracy']:.3f}" for s in scores.values()) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
