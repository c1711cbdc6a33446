"""Runs a GPTFace export (`gptface export`) with jax, numpy and safetensors only.

`gptface export` copies this file into the export directory, so a user elsewhere can do

    import exported                       # from inside the export directory (or on sys.path)
    model = exported.load("path/to/export")
    features = model.features(model.encode_images(images_uint8))   # {'cls', 'mean'} (B, D)
    log_odds = model.itm_score(model.text_ids(["a smiling woman"]), codes)

It imports nothing from the training package: the functions are `jax.export` serialisations
(StableHLO, any batch size) and the weights are safetensors files with flat '.'-joined names.
`text_ids` (captions -> ids) needs sentencepiece (the tokenizer model ships in the directory);
`export_format.py`, copied beside this file, says what the directory holds.
"""
from __future__ import annotations

import os

import jax
import numpy as np
from safetensors.numpy import load_file

try:  # inside the package
    from . import export_format
except ImportError:  # copied into an export directory beside export_format.py
    import export_format

FORMAT, MANIFEST = export_format.FORMAT, export_format.MANIFEST
ExportError, read_manifest, unflatten = export_format.ExportError, export_format.read_manifest, export_format.unflatten
FUNCTIONS = ("features", "itm_score", "vq_encode", "vq_decode")


def _tensors(path: str) -> dict:
    try:
        return load_file(path)
    except Exception as e:  # safetensors' errors for cut or foreign files name no file
        raise ExportError(f"{path}: unreadable ({type(e).__name__}: {e})") from None


class Exported:
    def __init__(self, directory: str):
        self.directory = directory
        self.manifest = read_manifest(directory)
        def path(name):
            return os.path.join(directory, name)
        self.params = {"params": unflatten(_tensors(path("params.safetensors")))}
        self.vq_params = unflatten(_tensors(path("vq_params.safetensors")))
        self._functions = {}
        for name in FUNCTIONS:
            with open(path(f"{name}.jaxexport"), "rb") as f:
                self._functions[name] = jax.export.deserialize(bytearray(f.read()))
        self.text_ids = export_format.CaptionIds(directory, self.manifest["max_text_len"])

    @property
    def image_size(self) -> int:
        return int(self.manifest["image_size"])

    def features(self, image_codes) -> dict:
        """(B, N) image codes -> {'cls': (B, D), 'mean': (B, D)} float32; the image alone, text empty."""
        return self._functions["features"].call(self.params, np.asarray(image_codes, np.int32))

    def itm_score(self, text_ids, image_codes):
        """Match log-odds (B,) of whole (caption, image) pairs."""
        return self._functions["itm_score"].call(self.params, np.asarray(text_ids, np.int32),
                                                 np.asarray(image_codes, np.int32))

    def encode_images(self, images_uint8):
        """(B, S, S, 3) uint8 aligned face crops at `image_size` -> (B, N) codes."""
        codes = self._functions["vq_encode"].call(self.vq_params, np.asarray(images_uint8, np.uint8))
        return codes.reshape(codes.shape[0], -1)

    def decode_codes(self, image_codes):
        """(B, N) codes -> (B, S, S, 3) uint8 images."""
        grid = int(self.manifest["image_grid"])
        return self._functions["vq_decode"].call(self.vq_params,
                                                 np.asarray(image_codes, np.int32).reshape(-1, grid, grid))


def load(directory: str) -> Exported:
    return Exported(directory)
