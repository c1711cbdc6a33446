"""What every benchmark reader returns, and the checks that turn a wrong layout into one clear error."""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from data_pipelines.errors import DataError


class LayoutError(DataError):
    """A manual directory that does not hold the official files where they belong."""


@dataclasses.dataclass(frozen=True)
class Item:
    key: str
    path: str                              # image file
    attributes: np.ndarray                 # int8 0/1 per attribute (empty when the dataset has none)
    expression: int = -1
    box: tuple[int, int, int, int] | None = None  # face (x, y, w, h) when the dataset gives one


@dataclasses.dataclass(frozen=True)
class Benchmark:
    name: str
    attribute_names: tuple[str, ...]
    expression_names: tuple[str, ...]
    splits: dict[str, list[Item]]
    crop: str                              # how the face is cut out: see crop_for()
    missing_images: int = 0                # listed in the label files but absent on disk


def require_file(root: str, relative: str, what: str, name: str) -> str:
    path = os.path.join(root, relative)
    if not os.path.isfile(path):
        raise LayoutError(f"{name}: expected {what} at {path} (manual dir {root}); see "
                          f"`gptface data benchmark --help` for the layout")
    return path


def require_dir(root: str, relative: str, what: str, name: str) -> str:
    path = os.path.join(root, relative)
    if not os.path.isdir(path):
        raise LayoutError(f"{name}: expected {what} at {path}/ (manual dir {root})")
    return path


def find_root(manual_dir: str, marker: str, name: str, candidates: tuple[str, ...] = ("",)) -> str:
    """The folder under `manual_dir` (itself or a known sub-folder) that holds `marker`."""
    if not os.path.isdir(manual_dir):
        raise LayoutError(f"{name}: manual dir {manual_dir} does not exist")
    for sub in candidates:
        if os.path.exists(os.path.join(manual_dir, sub, marker)):
            return os.path.join(manual_dir, sub)
    tried = ", ".join(os.path.join(manual_dir, sub, marker) for sub in candidates)
    raise LayoutError(f"{name}: expected {marker} in the manual dir; looked for {tried}")
