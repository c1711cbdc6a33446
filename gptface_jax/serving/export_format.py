"""What an export directory is, for the readers that run without the training package.

Both readers of `gptface export` (`exported.py`, which runs the `jax.export` functions, and
`torch_model.py`, the PyTorch reference) are copied into the export directory beside this file and
import it from there; it needs only numpy (and sentencepiece for captions).
"""
from __future__ import annotations

import json
import os

import numpy as np

FORMAT = "gptface-export/1"
MANIFEST = "manifest.json"


class ExportError(ValueError):
    """An export directory that cannot be used as written."""


def read_manifest(directory: str) -> dict:
    """The manifest of `directory`, checked: the format this reader knows, and every listed file present."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        raise ExportError(f"{directory}: not a GPTFace export (no {MANIFEST}); write one with `gptface export`")
    with open(path) as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT:
        raise ExportError(f"{path}: format {manifest.get('format')!r}, this reader understands {FORMAT!r}")
    missing = [name for name in manifest["files"] if not os.path.isfile(os.path.join(directory, name))]
    if missing:
        raise ExportError(f"{directory}: the export is incomplete, missing {', '.join(sorted(missing))}")
    return manifest


def unflatten(flat: dict) -> dict:
    """{'a.b.c': x} -> {'a': {'b': {'c': x}}}."""
    tree: dict = {}
    for name, value in flat.items():
        node = tree
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def tensor_mismatches(stored: dict, expected: dict, described_by: str) -> list[str]:
    """How stored tensors differ from what a config builds, one line each. Both map a flat name to
    (shape, dtype name); a dtype of None is not compared."""
    problems = [f"{k}: missing" for k in sorted(set(expected) - set(stored))]
    problems += [f"{k}: not in the model" for k in sorted(set(stored) - set(expected))]
    for k in sorted(set(stored) & set(expected)):
        (shape, dtype), (want_shape, want_dtype) = stored[k], expected[k]
        if tuple(shape) != tuple(want_shape) or (want_dtype is not None and dtype != want_dtype):
            problems.append(f"{k}: stored {dtype or ''}{list(shape)}, {described_by} builds "
                            f"{want_dtype or ''}{list(want_shape)}")
    return problems


def raise_mismatches(path: str, problems: list[str], described_by: str) -> None:
    if problems:
        raise ExportError(f"{path} does not match {described_by} ({len(problems)} problems): "
                          + "; ".join(problems[:5]))


class CaptionIds:
    """Captions -> (B, max_text_len) ids with the export's SentencePiece model, PAD (0) after each
    caption, as the model was trained. sentencepiece is imported on first use."""

    def __init__(self, directory: str, max_text_len: int):
        self.path = os.path.join(directory, "text_tokenizer.model")
        self.length = int(max_text_len)
        self._sp = None

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self._sp is None:
            import sentencepiece as spm
            self._sp = spm.SentencePieceProcessor(model_file=self.path)
        ids = np.zeros((len(texts), self.length), np.int32)
        for row, pieces in enumerate(self._sp.encode(list(texts))):
            ids[row, :min(len(pieces), self.length)] = pieces[:self.length]
        return ids
