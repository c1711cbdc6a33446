"""A trained VQ image tokenizer in use: load a VQ workdir, encode faces to codes and decode codes to
faces, in bounded-memory chunks on one device."""
from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.errors import DataError
from gptface_jax.models.vq import VQConfig, VQModel, l2_normalize, to_float, to_uint8
from gptface_jax.runtime import layout
from gptface_jax.runtime.checkpoints import Checkpointer


@dataclasses.dataclass
class TrainedVQ:
    config: VQConfig
    params: dict
    model: VQModel

    def encode(self, images_uint8, batch_size: int = 256) -> np.ndarray:
        """(N, S, S, 3) uint8 -> (N, grid, grid) codes, `batch_size` images per call (bounded memory)."""
        fn = _encode_jit(self.model)
        return _in_chunks(lambda x: np.asarray(fn(self.params, x)), images_uint8, batch_size)

    def decode(self, codes, batch_size: int = 256) -> np.ndarray:
        """(N, grid, grid) codes -> (N, S, S, 3) uint8."""
        fn = _decode_jit(self.model)
        return _in_chunks(lambda c: to_uint8(fn(self.params, c)), codes, batch_size)

    def unit_codebook(self) -> np.ndarray:
        """The code vectors, l2-normalised (K, code_dim) float32: what `codebook.npy` beside the shards holds."""
        return np.asarray(l2_normalize(self.params["codebook"]), np.float32)

    def check_matches(self, image_size: int, codebook_size: int, downsample: int | None = None) -> None:
        pairs = [("image size", self.config.image_size, image_size, "data.image_size"),
                 ("codebook size", self.config.codebook_size, codebook_size, "vq.codebook_size")]
        if downsample is not None:
            pairs.append(("downsampling", self.config.downsample, downsample, "vq.downsample"))
        for what, ours, theirs, key in pairs:
            if ours != theirs:
                raise DataError(f"VQ tokenizer has {what} {ours} but the config says {key}={theirs}")


_JIT_CACHE: dict = {}


def _in_chunks(fn, array, batch_size: int) -> np.ndarray:
    if len(array) <= batch_size:
        return fn(array)
    return np.concatenate([fn(array[i:i + batch_size]) for i in range(0, len(array), batch_size)])


def _encode_jit(model):
    key = ("enc", model.config)
    if key not in _JIT_CACHE:
        _JIT_CACHE[key] = jax.jit(lambda p, x: model.apply({"params": p}, to_float(x), method=VQModel.encode))
    return _JIT_CACHE[key]


def _decode_jit(model):
    key = ("dec", model.config)
    if key not in _JIT_CACHE:
        _JIT_CACHE[key] = jax.jit(lambda p, c: model.apply({"params": p}, c, method=VQModel.decode_codes))
    return _JIT_CACHE[key]


# vq_config.json fields added after the first tokenizers were trained, at the values those had.
VQ_ADDED_FIELDS = {"res_blocks": 1, "patch": 1, "beta": 0.25, "dtype": "float32"}


def config_of_record(raw: dict) -> VQConfig:
    """A vq_config.json (of any version) -> its VQConfig."""
    return VQConfig(**{**VQ_ADDED_FIELDS, **raw, "channels": tuple(raw["channels"])})


def abstract_params(cfg: VQConfig) -> dict:
    """The tokenizer's parameters as ShapeDtypeStructs (nothing computed)."""
    model = VQModel(cfg)
    image = jnp.zeros((1, cfg.image_size, cfg.image_size, 3))
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), image)["params"])


def load(workdir: str) -> TrainedVQ:
    """The latest checkpoint of a VQ workdir, on this process's devices (any mesh it was trained on)."""
    path = os.path.join(workdir, layout.VQ_CONFIG)
    if not os.path.isfile(path):
        raise DataError(f"{workdir}: not a VQ workdir (no {layout.VQ_CONFIG}); "
                        "train one with `gptface tokenizer image`")
    with open(path) as f:
        cfg = config_of_record(json.load(f))
    model = VQModel(cfg)
    params = abstract_params(cfg)
    checkpointer = Checkpointer(workdir, keep=100, async_save=False)
    if checkpointer.latest_step() is None:
        raise DataError(f"{workdir}: no VQ checkpoint yet (train with `gptface tokenizer image --workdir {workdir}`)")
    restored = checkpointer.restore_part({"params": params}, jax.sharding.SingleDeviceSharding(jax.devices()[0]))
    checkpointer.close()
    return TrainedVQ(cfg, restored["params"], model)
