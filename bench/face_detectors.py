"""Haar cascade vs BlazeFace keypoints on the same real photos, side by side in one run.

    python bench/face_detectors.py

Photos: scikit-image's LFW subset (100 faces, 100 non-faces, 25 px upscaled to 128 px), its
astronaut, matplotlib's Grace Hopper, and insightface's group photo when that package is installed.
Prints, per detector: faces kept, non-faces kept and ms per image (one thread). Then alignment
precision: each real portrait aligned at 256 px by its keypoints, BlazeFace run again on the aligned
crop, and the distance of the eye and mouth centres it finds there from the canonical positions.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from data_pipelines.ingest import keypoints  # noqa: E402
from data_pipelines.ingest.faces import FaceOptions, detect_faces  # noqa: E402
from tests import crawl_fixtures as cf  # noqa: E402


def group_photo():
    """insightface's t1.jpg (a group of six) where insightface is installed; None otherwise."""
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "images", "t1.jpg")
    image = cv2.imread(path)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def detectors():
    haar = FaceOptions()
    out = {"haar (alt2 cascade)": lambda rgb: detect_faces(rgb, haar)}
    for model in ("short", "full"):
        d = keypoints.BlazeFace(model)
        out[f"blazeface {model}"] = lambda rgb, d=d: [f.box for f in d(rgb)]
    return out


def timed(fn, images):
    fn(images[0])  # warm-up
    start = time.perf_counter()
    found = [fn(image) for image in images]
    return found, 1000 * (time.perf_counter() - start) / len(images)


def main() -> int:
    cv2.setNumThreads(1)
    faces, non_faces = cf.lfw_faces_and_non_faces(size=128)
    portraits = {"astronaut": cf.astronaut(), "grace_hopper": cf.grace_hopper()}
    group = group_photo()
    print("| detector | LFW faces kept (of 100) | LFW non-faces kept (of 100) | astronaut / Grace Hopper faces | "
          "group photo faces | coffee / cat / rocket faces | ms per 128 px image | ms per portrait |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, detect in detectors().items():
        on_faces, ms_small = timed(detect, faces)
        on_non_faces, _ = timed(detect, non_faces)
        on_portraits, ms_big = timed(detect, list(portraits.values()))
        group_faces = "-" if group is None else len(detect(group))
        others = " / ".join(str(len(detect(photo))) for photo in cf.non_faces())
        print(f"| {name} | {sum(bool(f) for f in on_faces)} | {sum(bool(f) for f in on_non_faces)} | "
              f"{' / '.join(str(len(f)) for f in on_portraits)} | {group_faces} | {others} | {ms_small:.1f} | "
              f"{ms_big:.1f} |")

    size = 256
    detector = keypoints.BlazeFace("short")
    print(f"\nAlignment at {size} px: distance (px) of the keypoints found on the aligned crop from the canonical "
          "positions (image-left eye, image-right eye, mouth); inter-ocular distance there "
          f"{(keypoints.CANONICAL[1, 0] - keypoints.CANONICAL[0, 0]) * size:.1f} px")
    print("| photo | found again on the crop: eye (left) / eye (right) / mouth | the fit's own residual (3 points) |")
    print("| --- | --- | --- |")
    for name, rgb in portraits.items():
        face = detector(rgb)[0]
        transform = keypoints.alignment(face, size)
        crop = keypoints.warp(rgb, transform, size)
        again = np.linalg.norm(detector(crop)[0].eyes_and_mouth - keypoints.CANONICAL * size, axis=1)
        moved = np.c_[face.eyes_and_mouth, np.ones(3)] @ transform.T
        fit = np.linalg.norm(moved - keypoints.CANONICAL * size, axis=1)
        print(f"| {name} | {' / '.join(f'{e:.1f}' for e in again)} | {fit.max():.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
