"""Does the ITM score read a caption word? One fixed caption scored on held-out faces that have the
attribute it names and on faces that do not.

    python bench/diagnostics/caption_reading.py W [N]

For each (caption, attribute) below: mean match log-odds on the N held-out faces (default 500)
where the attribute holds, and where it does not. A word the score reads gives a gap of the right
sign ("a photo of a woman": lower on men); a word it ignores scores both groups alike, and ITM
guidance then has nothing to pull generation with.
"""
import sys

import jax
import numpy as np

from gptface_jax import decoding, face_labels, inference
from gptface_jax.downstream import load_labelled

CAPTIONS = [  # caption, the label it names (face_labels names)
    ("a photo of a person", "male"),
    ("a photo of a man", "male"),
    ("a photo of a woman", "male"),
    ("a smiling person", "smiling"),
    ("a person wearing glasses", "eyeglasses"),
    ("a man with a beard", "beard"),
    ("a bald man", "bald"),
    ("a person looking happy", "expression:happy"),
    ("a person looking sad", "expression:sad"),
    ("a person looking surprised", "expression:surprised"),
    ("a person looking angry", "expression:angry"),
]

workdir = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 500
pretrained = inference.load(workdir)
dataset = pretrained.source_dataset()
test = load_labelled(dataset, "test", pretrained.image_size, max_examples=n)
codes = pretrained.image_codes(test["images"])
truth = face_labels.labels_as_predictions(test["attributes"], test.get("hair_colour"), test.get("expression"))
score = jax.jit(lambda t, i: decoding.itm_score(pretrained.model, pretrained.params, t, i))
print(f"{workdir}: mean ITM match log-odds on {len(codes)} held-out faces\n")
print("| caption | attribute | faces with it | faces without | with - without |")
print("| --- | --- | --- | --- | --- |")
for caption, attribute in CAPTIONS:
    s = np.asarray(score(np.repeat(pretrained.text_ids([caption]), len(codes), 0), codes))
    has, lacks = (face_labels.holds(truth, name) for name in (attribute, face_labels.NOT + attribute))
    if has is None:
        continue  # the data has no such labels
    print(f"| {caption} | {attribute} | {s[has].mean():+.3f} | {s[lacks].mean():+.3f} | {s[has].mean() - s[lacks].mean():+.3f} |")
