"""CelebA (aligned & cropped): 40 binary attributes, official train/validation/test partition.

Manual dir layout (as distributed):
    list_attr_celeba.txt       line 1: image count; line 2: the 40 attribute names;
                               then `000001.jpg -1  1 ...` (one -1/1 per attribute)
    list_eval_partition.txt    `000001.jpg 0`   (0 train, 1 validation, 2 test)
    img_align_celeba/          000001.jpg ...
(`Anno/` and `Eval/` sub-folders, as in the Google Drive copy, are found too.)
"""
from __future__ import annotations

import os

import numpy as np

from data_pipelines.benchmarks.layout import Benchmark, Item, LayoutError, find_root, require_dir, require_file

NAME = "celeba"
SPLITS = {0: "train", 1: "validation", 2: "test"}


def read_attribute_list(path: str, name: str, expected_attributes: int | None = 40) -> tuple[list[str],
                                                                                             dict[str, np.ndarray]]:
    """Parses the CelebA attribute-list format (shared by LFWA's text release)."""
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    if len(lines) < 2:
        raise LayoutError(f"{name}: {path} is too short: expected a count line, a header and rows")
    try:
        count = int(lines[0].split()[0])
    except ValueError:
        raise LayoutError(f"{name}: {path} line 1 must be the image count, got {lines[0][:60]!r}") from None
    names = lines[1].split()
    if expected_attributes and len(names) != expected_attributes:
        raise LayoutError(f"{name}: {path} line 2 must name {expected_attributes} attributes, found {len(names)}")
    labels = {}
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if len(parts) != len(names) + 1 or any(v not in ("1", "-1", "0") for v in parts[1:]):
            raise LayoutError(f"{name}: {path} line {number} must be a file name and {len(names)} values "
                              f"of -1/1, got {line[:80]!r}")
        labels[parts[0]] = (np.array(parts[1:], np.int8) > 0).astype(np.int8)
    if len(labels) != count:
        raise LayoutError(f"{name}: {path} announces {count} images on line 1 but lists {len(labels)}")
    return names, labels


def read(manual_dir: str) -> Benchmark:
    root = find_root(manual_dir, "img_align_celeba", NAME, ("", "celeba", "CelebA"))
    attr_path = next((p for p in (os.path.join(root, "list_attr_celeba.txt"),
                                  os.path.join(root, "Anno", "list_attr_celeba.txt"))
                      if os.path.isfile(p)), None) or require_file(root, "list_attr_celeba.txt", "the attribute list",
                                                                   NAME)
    part_path = next((p for p in (os.path.join(root, "list_eval_partition.txt"),
                                  os.path.join(root, "Eval", "list_eval_partition.txt"))
                      if os.path.isfile(p)), None) or require_file(root, "list_eval_partition.txt",
                                                                   "the partition list", NAME)
    images = require_dir(root, "img_align_celeba", "the aligned images", NAME)
    names, labels = read_attribute_list(attr_path, NAME)
    splits: dict[str, list[Item]] = {s: [] for s in SPLITS.values()}
    missing = 0
    with open(part_path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise LayoutError(f"{NAME}: {part_path} line {number} must be `FILE 0|1|2`, got {line.strip()[:80]!r}")
            if parts[0] not in labels:
                raise LayoutError(f"{NAME}: {part_path} line {number} names {parts[0]}, which the attribute list lacks")
            path = os.path.join(images, parts[0])
            if not os.path.isfile(path):
                missing += 1
                continue
            splits[SPLITS[int(parts[1])]].append(Item(parts[0], path, labels[parts[0]]))
    return Benchmark(NAME, tuple(names), (), splits, crop="celeba_aligned", missing_images=missing)
