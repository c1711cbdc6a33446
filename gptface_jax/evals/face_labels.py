"""Named face labels and whether they hold, for the judge's predictions and for ground truth alike.

A label name is one of
  "male", "smiling", ...   a binary attribute (data_pipelines.synthfaces.attributes.ATTRIBUTES)
  "hair:black", ...        the hair-colour class is that colour (HAIR_COLOURS)
  "expression:happy", ...  the expression class is that expression (EXPRESSIONS)
  "not:<label>"            the label is known and does not hold

Both sides are read in the judge's prediction shape (attribute_classifier.Judge.predict_all):
{"attributes": (N, A) probabilities, "hair_colour": (N, C) and "expression": (N, E) class
probabilities}. `labels_as_predictions` puts ground-truth labels in that shape, so one `holds`
serves the edit evaluation's eligibility, its success, text-to-face and the diagnostics.
"""
from __future__ import annotations

import numpy as np

from data_pipelines.synthfaces.attributes import ATTRIBUTES, EXPRESSIONS, HAIR_COLOURS

# "prefix:NAME" labels: the head that answers them and its class names
CATEGORICAL = {"hair": ("hair_colour", HAIR_COLOURS), "expression": ("expression", EXPRESSIONS)}
NOT = "not:"


def _head_and_index(name: str) -> tuple[str, int]:
    prefix, _, value = name.partition(":")
    if value and prefix in CATEGORICAL:
        head, classes = CATEGORICAL[prefix]
        if value not in classes:
            raise ValueError(f"unknown {prefix} {value!r} in label {name!r}; known: {', '.join(classes)}")
        return head, classes.index(value)
    if name not in ATTRIBUTES:
        raise ValueError(f"unknown label {name!r}: not an attribute ({', '.join(ATTRIBUTES)}) "
                         f"nor {', '.join(p + ':NAME' for p in CATEGORICAL)}")
    return "attributes", ATTRIBUTES.index(name)


def _known_and_held(predictions: dict, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    if name.startswith(NOT):
        inner = _known_and_held(predictions, name[len(NOT):])
        return None if inner is None else (inner[0], inner[0] & ~inner[1])
    head, index = _head_and_index(name)
    if head not in predictions:
        return None
    p = np.asarray(predictions[head])
    if head == "attributes":
        return p[:, index] >= 0, p[:, index] > 0.5          # ground truth: -1 is unknown
    known = p.max(-1) > 0                                   # ground truth: an all-zero row is unknown
    return known, known & (p.argmax(-1) == index)


def holds(predictions: dict, name: str) -> np.ndarray | None:
    """(N,) bool: the label `name` holds (None: there is no head for it, e.g. a judge without a
    hair-colour head, or data without hair-colour labels). Unknown ground truth holds for neither
    "X" nor "not:X"."""
    known_and_held = _known_and_held(predictions, name)
    return None if known_and_held is None else known_and_held[1]


def labels_as_predictions(attributes: np.ndarray, hair_colour: np.ndarray | None = None,
                          expression: np.ndarray | None = None) -> dict:
    """Ground-truth labels in the judge's prediction shape: attributes as 0/1 (-1 stays, unknown),
    each class label one-hot (-1, unknown: an all-zero row). A class label with no known value is
    left out, as a judge without that head would be."""
    truth = {"attributes": np.asarray(attributes, np.float32)}
    for head, labels, classes in (("hair_colour", hair_colour, HAIR_COLOURS), ("expression", expression, EXPRESSIONS)):
        if labels is not None and (np.asarray(labels) >= 0).any():
            truth[head] = (np.asarray(labels)[:, None] == np.arange(len(classes))).astype(np.float32)
    return truth
