"""Mini benchmark folders in the official file formats, with real face photos as the images."""
from __future__ import annotations

import csv
import os

import cv2
import numpy as np
from PIL import Image

from data_pipelines.benchmarks.lfwa import CELEBA_40
from tests.crawl_fixtures import astronaut, grace_hopper, lfw_faces_and_non_faces


def _faces(n: int, w: int, h: int) -> list[np.ndarray]:
    faces, _ = lfw_faces_and_non_faces()
    pool = [astronaut()[0:300, 100:400], grace_hopper()] + faces
    return [cv2.resize(pool[i % len(pool)], (w, h), interpolation=cv2.INTER_AREA) for i in range(n)]


def _save(path: str, rgb: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rgb).save(path, quality=92)


def attribute_rows(n: int, seed: int = 0) -> np.ndarray:
    return np.where(np.random.default_rng(seed).random((n, 40)) < 0.3, 1, -1)


def make_celeba(root: str, n: int = 7, missing: int = 1) -> dict:
    """n listed images, the last `missing` of them absent on disk; partition 0/1/2 cycling."""
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for name, img in zip(names[: n - missing], _faces(n - missing, 178, 218)):
        _save(os.path.join(root, "img_align_celeba", name), img)
    labels = attribute_rows(n)
    with open(os.path.join(root, "list_attr_celeba.txt"), "w") as f:
        f.write(f"{n}\n" + " ".join(CELEBA_40) + " \n")
        for name, row in zip(names, labels):
            f.write(name + "".join(f" {v:2d}" for v in row) + "\n")
    partition = [i % 3 for i in range(n)]
    with open(os.path.join(root, "list_eval_partition.txt"), "w") as f:
        f.writelines(f"{name} {p}\n" for name, p in zip(names, partition))
    return {"names": names, "labels": (labels > 0).astype(np.int8), "partition": partition}


def make_lfwa_mat(root: str, n: int = 6) -> dict:
    from scipy.io import savemat
    names = [f"Person_{i}/Person_{i}_0001.jpg" for i in range(n)]
    for name, img in zip(names, _faces(n, 250, 250)):
        _save(os.path.join(root, "lfw", name), img)
    labels = (np.random.default_rng(1).random((n, 40)) < 0.4).astype(np.uint8)
    savemat(os.path.join(root, "lfw_att_40.mat"),
            {"name": np.array(names, dtype=object).reshape(-1, 1), "label": labels})
    train, test = np.arange(1, n - 1), np.array([n - 1, n])  # 1-based, as released
    savemat(os.path.join(root, "indices_train_test.mat"), {"indices_img_train": train.reshape(-1, 1),
                                                           "indices_img_test": test.reshape(-1, 1)})
    return {"names": names, "labels": labels, "train": train - 1, "test": test - 1}


def make_rafdb(root: str) -> dict:
    base = os.path.join(root, "basic")
    rows = [("train_00001.jpg", 4), ("train_00002.jpg", 7), ("train_00003.jpg", 1), ("test_0001.jpg", 5),
            ("test_0002.jpg", 6)]
    for (name, _), img in zip(rows, _faces(len(rows), 100, 100)):
        _save(os.path.join(base, "Image", "aligned", name.replace(".jpg", "_aligned.jpg")), img)
    os.makedirs(os.path.join(base, "EmoLabel"), exist_ok=True)
    with open(os.path.join(base, "EmoLabel", "list_patition_label.txt"), "w") as f:
        f.writelines(f"{name} {label}\n" for name, label in rows)
    return {"rows": rows}


def make_affectnet(root: str) -> dict:
    header = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
              "expression", "valence", "arousal"]
    rows = {"training.csv": [("1/a.jpg", 1), ("1/b.jpg", 7), ("2/c.jpg", 9), ("2/d.jpg", 0)],
            "validation.csv": [("3/e.jpg", 3), ("3/f.jpg", 10)]}
    images = _faces(6, 320, 320)
    os.makedirs(root, exist_ok=True)
    k = 0
    for file, entries in rows.items():
        with open(os.path.join(root, file), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for path, expression in entries:
                _save(os.path.join(root, "Manually_Annotated_Images", path), images[k])
                k += 1
                writer.writerow([path, 60, 60, 200, 200, "1;2;3", expression, 0.1, 0.2])
    return {"rows": rows}
