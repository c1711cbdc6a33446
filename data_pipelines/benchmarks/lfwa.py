"""LFWA: LFW images with the 40 CelebA-style attributes of Liu et al. (2015), official split.

Manual dir layout, either release:
    lfw_att_40.mat + indices_train_test.mat   `name` (image paths) and `label` (N x 40 of 0/1 or -1/1);
                                              `indices_img_train` / `indices_img_test` (1-based)
    list_attr_lfwa.txt (+ list_eval_partition_lfwa.txt)   the CelebA text formats, paths relative to lfw/
    lfw/                                      Person_Name/Person_Name_0001.jpg ...
Reading the .mat release needs scipy.
"""
from __future__ import annotations

import os

import numpy as np

from data_pipelines.benchmarks.celeba import read_attribute_list
from data_pipelines.benchmarks.layout import Benchmark, Item, LayoutError, find_root, require_dir

NAME = "lfwa"
CELEBA_40 = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()


def _mat_release(root: str, images: str) -> tuple[list[str], dict[str, list[tuple[str, np.ndarray]]]]:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise LayoutError(f"{NAME}: reading lfw_att_40.mat needs scipy (pip install scipy), "
                          "or provide list_attr_lfwa.txt instead") from None
    att = loadmat(os.path.join(root, "lfw_att_40.mat"))
    idx_path = os.path.join(root, "indices_train_test.mat")
    if not os.path.isfile(idx_path):
        raise LayoutError(f"{NAME}: expected the official split at {idx_path} beside lfw_att_40.mat")
    idx = loadmat(idx_path)
    for field, source in (("name", att), ("label", att), ("indices_img_train", idx), ("indices_img_test", idx)):
        if field not in source:
            raise LayoutError(f"{NAME}: field {field!r} missing from the .mat release in {root}")
    names = [str(np.ravel(n)[0]) for n in np.ravel(att["name"])]
    labels = (np.asarray(att["label"]) > 0).astype(np.int8)
    if labels.shape != (len(names), 40):
        raise LayoutError(f"{NAME}: lfw_att_40.mat label is {labels.shape}, expected ({len(names)}, 40)")
    splits = {}
    for split, field in (("train", "indices_img_train"), ("test", "indices_img_test")):
        rows = np.ravel(idx[field]).astype(int) - 1
        splits[split] = [(names[r].replace("\\", "/"), labels[r]) for r in rows]
    return CELEBA_40, splits


def _text_release(root: str) -> tuple[list[str], dict[str, list[tuple[str, np.ndarray]]]]:
    names, labels = read_attribute_list(os.path.join(root, "list_attr_lfwa.txt"), NAME)
    partition = os.path.join(root, "list_eval_partition_lfwa.txt")
    assignment = {}
    if os.path.isfile(partition):
        with open(partition, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                parts = line.split()
                if parts and (len(parts) != 2 or parts[1] not in ("0", "1", "2")):
                    raise LayoutError(f"{NAME}: {partition} line {number} must be `FILE 0|1|2`")
                if parts:
                    assignment[parts[0]] = {"0": "train", "1": "validation", "2": "test"}[parts[1]]
    splits: dict[str, list] = {}
    for file, label in labels.items():
        splits.setdefault(assignment.get(file, "train"), []).append((file, label))
    return names, splits


def read(manual_dir: str) -> Benchmark:
    root = find_root(manual_dir, "lfw", NAME, ("", "lfwa", "LFWA"))
    images = require_dir(root, "lfw", "the LFW images", NAME)
    if os.path.isfile(os.path.join(root, "lfw_att_40.mat")):
        names, listed = _mat_release(root, images)
    elif os.path.isfile(os.path.join(root, "list_attr_lfwa.txt")):
        names, listed = _text_release(root)
    else:
        raise LayoutError(f"{NAME}: expected lfw_att_40.mat (+ indices_train_test.mat) or list_attr_lfwa.txt in {root}")
    splits, missing = {}, 0
    for split, rows in listed.items():
        items = []
        for file, label in rows:
            path = os.path.join(images, file)
            if os.path.isfile(path):
                items.append(Item(file, path, label))
            else:
                missing += 1
        splits[split] = items
    return Benchmark(NAME, tuple(names), (), splits, crop="lfw_deepfunneled", missing_images=missing)
