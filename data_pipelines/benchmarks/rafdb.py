"""RAF-DB basic: 7 expressions on aligned 100x100 faces, official train/test split.

Manual dir layout (as distributed, `basic/` or its contents):
    EmoLabel/list_patition_label.txt   `train_00001.jpg 5` (labels 1..7; the file name's prefix is the split)
    Image/aligned/train_00001_aligned.jpg ...
"""
from __future__ import annotations

import os

import numpy as np

from data_pipelines.benchmarks.layout import Benchmark, Item, LayoutError, find_root, require_dir, require_file

NAME = "rafdb"
EXPRESSIONS = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")  # labels 1..7


def read(manual_dir: str) -> Benchmark:
    root = find_root(manual_dir, "EmoLabel", NAME, ("", "basic"))
    labels_path = require_file(root, os.path.join("EmoLabel", "list_patition_label.txt"), "the label list", NAME)
    aligned = next((p for p in (os.path.join(root, "Image", "aligned"),
                                os.path.join(root, "aligned")) if os.path.isdir(p)),
                   None) or require_dir(root, os.path.join("Image", "aligned"), "the aligned images", NAME)
    splits: dict[str, list[Item]] = {"train": [], "test": []}
    missing = 0
    with open(labels_path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].isdigit() or not 1 <= int(parts[1]) <= 7:
                raise LayoutError(f"{NAME}: {labels_path} line {number} must be `NAME.jpg LABEL` with LABEL in 1..7, "
                                  f"got {line.strip()[:80]!r}")
            split = parts[0].split("_")[0]
            if split not in splits:
                raise LayoutError(f"{NAME}: {labels_path} line {number}: {parts[0]} starts with neither "
                                  "train_ nor test_")
            stem, ext = os.path.splitext(parts[0])
            path = os.path.join(aligned, f"{stem}_aligned{ext}")
            if not os.path.isfile(path):
                missing += 1
                continue
            splits[split].append(Item(parts[0], path, np.zeros((0,), np.int8), int(parts[1]) - 1))
    return Benchmark(NAME, (), EXPRESSIONS, splits, crop="full", missing_images=missing)
