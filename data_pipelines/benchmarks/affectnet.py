"""AffectNet (manually annotated): expressions with face boxes, official train/validation split.

Manual dir layout (as distributed):
    training.csv, validation.csv    columns subDirectory_filePath, face_x, face_y, face_width,
                                    face_height, ..., expression (0..10)
    Manually_Annotated_Images/      the sub-directories the CSV paths point into
Expressions 0..7 are kept (8-class); with classes=7 contempt (7) is dropped too. 8..10
(none, uncertain, no face) are never expressions and are skipped.
"""
from __future__ import annotations

import csv
import os

import numpy as np

from data_pipelines.benchmarks.layout import Benchmark, Item, LayoutError, find_root, require_dir, require_file

NAME = "affectnet"
EXPRESSIONS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "expression")


def read(manual_dir: str, classes: int = 8) -> Benchmark:
    if classes not in (7, 8):
        raise LayoutError(f"{NAME}: classes must be 7 or 8, got {classes}")
    root = find_root(manual_dir, "training.csv", NAME, ("", "affectnet", "AffectNet", "Manually_Annotated_file_lists"))
    images = require_dir(root, "Manually_Annotated_Images", "the image folder", NAME) \
        if os.path.isdir(os.path.join(root, "Manually_Annotated_Images")) else \
        require_dir(os.path.dirname(root.rstrip(os.sep)), "Manually_Annotated_Images", "the image folder", NAME)
    splits: dict[str, list[Item]] = {}
    missing = 0
    for split, file in (("train", "training.csv"), ("validation", "validation.csv")):
        path = require_file(root, file, f"the {split} list", NAME)
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            absent = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if absent:
                raise LayoutError(f"{NAME}: {path} lacks columns {absent}; header is {reader.fieldnames}")
            items = []
            for number, row in enumerate(reader, start=2):
                try:
                    expression = int(row["expression"])
                    box = tuple(int(float(row[c])) for c in ("face_x", "face_y", "face_width", "face_height"))
                except ValueError:
                    raise LayoutError(f"{NAME}: {path} line {number} has a non-numeric box or expression") from None
                if expression >= classes:
                    continue
                image = os.path.join(images, row["subDirectory_filePath"])
                if not os.path.isfile(image):
                    missing += 1
                    continue
                items.append(Item(row["subDirectory_filePath"], image, np.zeros((0,), np.int8), expression, box))
        splits[split] = items
    return Benchmark(NAME, (), EXPRESSIONS[:classes], splits, crop="box", missing_images=missing)
