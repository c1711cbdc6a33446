"""`gptface export`: one self-contained directory per checkpoint; `load` restores it onto any devices.

    DIR/manifest.json          format, shapes, platforms, file list (what `load` checks first)
    DIR/config.json            the resolved pre-training config
    DIR/params.safetensors     GPTFace parameters, flat '.'-joined names (block_0.attention.query.kernel)
    DIR/vq_config.json, vq_params.safetensors    the VQ image tokenizer
    DIR/text_tokenizer.model   the SentencePiece model
    DIR/{features,itm_score,vq_encode,vq_decode}.jaxexport
                               `jax.export` serialisations, symbolic batch size, parameters as inputs
    DIR/exported.py            a reader that needs only jax, numpy and safetensors
    DIR/torch_model.py         a PyTorch reference of the same functions (torch, numpy, safetensors)
    DIR/export_format.py       what both readers share (numpy only)

`load(DIR)` is the in-package reader: it rebuilds the Flax model from config.json and places the
parameters on a mesh of whatever devices are present (data parallel over all of them), so an
export made on one machine runs on any device count.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from safetensors.numpy import load_file, save_file

from data_pipelines.errors import DataError
from gptface_jax.models.transformer import GPTFace, ModelConfig, abstract_variables
from gptface_jax.runtime import config_lib, layout, sharding
from gptface_jax.serving import export_format, image_tokenizer
from gptface_jax.serving import exported as reader
from gptface_jax.serving import features as features_lib

PLATFORMS = ("cpu", "cuda", "tpu")
READERS = ("exported.py", "torch_model.py", "export_format.py")


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dict of arrays -> {'a.b.c': array}; names are the parameter paths, so they are stable."""
    flat = {}
    for key, value in tree.items():
        if "." in key:
            raise ValueError(f"parameter name {key!r} contains '.'")
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, jax.ShapeDtypeStruct):  # abstract trees (shape checks) stay abstract
            flat[name] = value
        else:
            flat[name] = np.array(value, order="C")  # not ascontiguousarray: it makes scalars (1,)
    return flat


def _serialize(name: str, fn, platforms: tuple[str, ...], *args) -> bytes:
    try:
        exp = jax.export.export(jax.jit(fn), platforms=platforms)(*args)
    except Exception as e:  # noqa: BLE001 - jax raises several types for a platform it cannot lower to
        raise ExportPlatformError(f"cannot serialise {name} for platforms {list(platforms)}: "
                                  f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    return bytes(exp.serialize())


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


class ExportPlatformError(DataError):
    """A requested platform that this jaxlib cannot serialise a function for."""


def export(workdir: str, out_dir: str, compute_dtype: str = "float32", platforms: tuple[str, ...] = PLATFORMS) -> dict:
    """Writes the export of `workdir`'s latest checkpoint to `out_dir` (written aside, then moved in place).

    The serialised functions compute in `compute_dtype`: float32 by default, so an export reproduces
    the checkpoint's numbers exactly; 'bfloat16' as in training is faster on accelerators. Each
    function is serialised for every platform in `platforms` (the manifest lists them); one that
    cannot be is an ExportPlatformError naming it.
    """
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown or not platforms:
        raise ExportPlatformError(f"unknown export platforms {unknown or list(platforms)}: "
                                  f"choose from {list(PLATFORMS)}")
    from gptface_jax.models.vq import VQModel, quantize_uint8, to_float
    from gptface_jax.serving import inference
    pretrained = inference.load(workdir)
    mc = dataclasses.replace(pretrained.model.config, compute_dtype=compute_dtype)
    model = GPTFace(mc)
    staging = out_dir.rstrip("/") + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    tensors = {"params.safetensors": pretrained.params["params"], "vq_params.safetensors": pretrained.vq.params}
    for name, tree in tensors.items():
        save_file(flatten(jax.device_get(tree)), os.path.join(staging, name))
        os.chmod(os.path.join(staging, name), _FILE_MODE)  # safetensors writes 0600; the rest of the export is 0644
    with open(os.path.join(staging, "config.json"), "w") as f:
        json.dump(pretrained.config.to_dict(), f, indent=1)
    with open(os.path.join(staging, layout.VQ_CONFIG), "w") as f:
        json.dump(dataclasses.asdict(pretrained.vq.config), f, indent=1)
    shutil.copy(os.path.join(pretrained.config.data.pretokenized, layout.TOKENIZER),
                os.path.join(staging, "text_tokenizer.model"))
    for module in READERS:  # the standalone readers travel with the weights
        shutil.copy(os.path.join(os.path.dirname(__file__), module), os.path.join(staging, module))

    b = jax.export.symbolic_shape("b")[0]
    def spec(shape, dtype):
        return jax.ShapeDtypeStruct(shape, dtype)
    params_spec = jax.tree.map(lambda x: spec(x.shape, x.dtype), pretrained.params)
    vq_spec = jax.tree.map(lambda x: spec(x.shape, x.dtype), pretrained.vq.params)
    codes = spec((b, mc.image_grid ** 2), jnp.int32)
    vq_model = pretrained.vq.model
    size, grid = pretrained.image_size, mc.image_grid
    functions = {
        "features": (lambda p, c: features_lib.image_features(model, p, c), params_spec, codes),
        "itm_score": (lambda p, t, c: _itm_log_odds(model, p, t, c), params_spec,
                      spec((b, mc.max_text_len), jnp.int32), codes),
        "vq_encode": (lambda p, x: vq_model.apply({"params": p}, to_float(x), method=VQModel.encode), vq_spec,
                      spec((b, size, size, 3), jnp.uint8)),
        "vq_decode": (lambda p, c: quantize_uint8(vq_model.apply({"params": p}, c, method=VQModel.decode_codes)),
                      vq_spec,
                      spec((b, grid, grid), jnp.int32)),
    }
    for name, (fn, *args) in functions.items():
        with open(os.path.join(staging, f"{name}.jaxexport"), "wb") as f:
            f.write(_serialize(name, fn, tuple(platforms), *args))
    files = sorted(os.listdir(staging))
    manifest = {"format": reader.FORMAT, "workdir": os.path.abspath(workdir), "files": files,
                "image_size": size, "image_grid": grid, "max_text_len": mc.max_text_len,
                "compute_dtype": compute_dtype, "platforms": {name: list(platforms) for name in functions},
                "width": mc.width, "codebook_size": mc.codebook_size, "text_vocab": mc.text_vocab,
                "parameters": int(sum(x.size for x in jax.tree.leaves(pretrained.params)))}
    with open(os.path.join(staging, reader.MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(staging, out_dir)
    return manifest


def _itm_log_odds(model: GPTFace, params, text_ids, image_codes):
    itm = model.apply(params, text_ids, image_codes, method=GPTFace.match_logits)
    return itm[:, 1] - itm[:, 0]


@dataclasses.dataclass
class Loaded:
    """An export restored for this package: the Flax model, its parameters on `mesh`, the jitted functions."""
    config: ml_collections.ConfigDict
    model: GPTFace
    params: dict
    mesh: jax.sharding.Mesh
    directory: str
    vq_config: object        # the image tokenizer's VQConfig
    vq_params: dict          # its parameters (numpy), checked against it

    def _batched(self, fn, *arrays):
        """Pads the batch to a multiple of the data-parallel size, runs sharded, cuts back."""
        n = len(arrays[0])
        def put(batch):
            specs = [jax.sharding.PartitionSpec(self.mesh.axis_names, *([None] * (a.ndim - 1))) for a in batch]
            return [jax.device_put(a, jax.sharding.NamedSharding(self.mesh, s)) for a, s in zip(batch, specs)]
        return sharding.run_in_batches(lambda *batch: fn(self.params, *batch), list(arrays),
                                       n + (-n % self.mesh.devices.size), put)

    def features(self, image_codes) -> dict:
        return self._batched(self._features, np.asarray(image_codes, np.int32))

    def itm_score(self, text_ids, image_codes) -> np.ndarray:
        return self._batched(self._itm, np.asarray(text_ids, np.int32), np.asarray(image_codes, np.int32))

    def __post_init__(self):
        self._features = jax.jit(lambda p, c: features_lib.image_features(self.model, p, c))
        self._itm = jax.jit(lambda p, t, c: _itm_log_odds(self.model, p, t, c))


def load(directory: str, devices=None) -> Loaded:
    """Restores an export onto `devices` (default: all), parameters replicated, batches split across them."""
    manifest = reader.read_manifest(directory)
    with open(os.path.join(directory, "config.json")) as f:
        config = config_lib.upgrade(json.load(f))
    config.model.scan_layers, config.model.remat = False, "none"  # exports hold the loop layout
    model = GPTFace(dataclasses.replace(ModelConfig.from_config(config),
                                        compute_dtype=manifest.get("compute_dtype", "float32")))
    mc = model.config
    stored = _checked_tensors(directory, "params.safetensors", flatten(abstract_variables(model)["params"]),
                              "config.json")
    with open(os.path.join(directory, layout.VQ_CONFIG)) as f:
        vq_config = image_tokenizer.config_of_record(json.load(f))
    vq_stored = _checked_tensors(directory, "vq_params.safetensors",
                                 flatten(image_tokenizer.abstract_params(vq_config)), layout.VQ_CONFIG)
    if manifest["image_grid"] != mc.image_grid:
        raise DataError(f"{directory}: manifest image_grid {manifest['image_grid']} "
                        f"but config.json builds {mc.image_grid}")
    devices = list(devices if devices is not None else jax.devices())
    mesh = jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)
    params = jax.device_put({"params": reader.unflatten(stored)}, sharding.replicated(mesh))
    return Loaded(config, model, params, mesh, directory, vq_config, reader.unflatten(vq_stored))


def _checked_tensors(directory: str, name: str, expected: dict, described_by: str) -> dict:
    """The tensors of `name`, which must be exactly `expected`'s names, shapes and dtypes."""
    try:
        stored = load_file(os.path.join(directory, name))
    except Exception as e:  # safetensors' errors for cut or foreign files
        raise DataError(f"{directory}/{name}: unreadable ({type(e).__name__}: {e})") from None
    problems = export_format.tensor_mismatches(
        {k: (v.shape, str(v.dtype)) for k, v in stored.items()},
        {k: (v.shape, str(np.dtype(v.dtype))) for k, v in expected.items()}, described_by)
    if problems:
        raise DataError(f"{directory}: {name} does not match {described_by} ({len(problems)} problems): "
                        + "; ".join(problems[:5]))
    return stored
