"""Export: a fresh process reproduces the checkpoint's features and ITM scores without the training code."""
import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from data_pipelines.errors import DataError
from gptface_jax.models.transformer import GPTFace
from gptface_jax.serving import export, features, inference
from gptface_jax.serving.exported import ExportError

# Run in a fresh interpreter from inside the export directory: only jax, numpy and safetensors.
FRESH = """
import json, sys
import numpy as np
import exported
model = exported.load(".")
inputs = np.load(sys.argv[1])
feats = model.features(inputs["codes"])
np.savez(sys.argv[2], cls=np.asarray(feats["cls"]), mean=np.asarray(feats["mean"]),
         itm=np.asarray(model.itm_score(inputs["text"], inputs["codes"])),
         codes=np.asarray(model.encode_images(inputs["images"])))
ours = ("gptface_jax", "data_pipelines", "flax", "optax", "orbax")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ours)))
"""


@pytest.fixture(scope="module")
def exported_dir(trained_workdir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("export") / "gptface")
    export.export(trained_workdir, out)
    return out


def _inputs(pretrained, n=5):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, pretrained.model.config.codebook_size, (n, pretrained.grid ** 2)).astype(np.int32)
    text = pretrained.text_ids(["a smiling woman with a hat", "a man", "portrait", "a bald guy", "a gal in specs"][:n])
    images = rng.integers(0, 256, (n, pretrained.image_size, pretrained.image_size, 3)).astype(np.uint8)
    return codes, text, images


def _float32_reference(pretrained, codes, text):
    """The checkpoint's own features and ITM log-odds, computed in float32 by the training package's model."""
    model = GPTFace(dataclasses.replace(pretrained.model.config, compute_dtype="float32"))
    feats = jax.device_get(jax.jit(lambda p, c: features.image_features(model, p, c))(pretrained.params, codes))
    itm = np.asarray(jax.jit(model.apply)(pretrained.params, text, codes)["itm_logits"])
    return feats, itm[:, 1] - itm[:, 0]


def test_export_reloads_in_a_fresh_process_without_the_training_code(trained_workdir, exported_dir, tmp_path):
    pretrained = inference.load(trained_workdir)
    codes, text, images = _inputs(pretrained)
    want, itm = _float32_reference(pretrained, codes, text)
    np.savez(tmp_path / "in.npz", codes=codes, text=text, images=images)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["JAX_NUM_CPU_DEVICES"] = "1"
    out = subprocess.run([sys.executable, "-c", FRESH, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                         cwd=exported_dir, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []  # nothing of this package, Flax or optax
    got = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(got["cls"], want["cls"], atol=1e-5)
    np.testing.assert_allclose(got["mean"], want["mean"], atol=1e-5)
    np.testing.assert_allclose(got["itm"], itm, atol=1e-5)
    np.testing.assert_array_equal(got["codes"], pretrained.image_codes(images))


def test_load_places_an_export_on_any_device_count(trained_workdir, exported_dir):
    pretrained = inference.load(trained_workdir)
    codes, text, _ = _inputs(pretrained)
    want, itm = _float32_reference(pretrained, codes, text)
    for devices in (jax.devices()[:1], jax.devices()[:2], jax.devices()):  # 5 rows pad to every device count
        loaded = export.load(exported_dir, devices=devices)
        got = loaded.features(codes)
        np.testing.assert_allclose(got["cls"], want["cls"], atol=1e-5)
        np.testing.assert_allclose(loaded.itm_score(text, codes), itm, atol=1e-5)


def test_a_broken_export_names_what_is_wrong(exported_dir, tmp_path):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(exported_dir, broken)
    os.remove(broken / "itm_score.jaxexport")
    with pytest.raises(ExportError, match="missing itm_score.jaxexport"):
        export.load(str(broken))
    with pytest.raises(ExportError, match="not a GPTFace export"):
        export.load(str(tmp_path))
    mismatched = tmp_path / "mismatched"
    shutil.copytree(exported_dir, mismatched)
    config = json.load(open(mismatched / "config.json"))
    config["model"]["width"] = 64
    json.dump(config, open(mismatched / "config.json", "w"))
    with pytest.raises(DataError, match=r"does not match config.json \(24 problems\): block_0.attention.key.bias: "
                                         r"stored float32\[4, 8\], config.json builds float32\[4, 16\]"):
        export.load(str(mismatched))
    # a tensor saved in another dtype is named, not silently cast
    from safetensors.numpy import load_file, save_file
    half = tmp_path / "half"
    shutil.copytree(exported_dir, half)
    tensors = load_file(half / "params.safetensors")
    tensors["text_embed"] = tensors["text_embed"].astype(np.float16)
    save_file(tensors, half / "params.safetensors")
    with pytest.raises(DataError, match=r"text_embed: stored float16\[.*config.json builds float32"):
        export.load(str(half))
    # the image tokenizer's parameters are read and checked too; a cut file is named by both readers
    cut = tmp_path / "cut"
    shutil.copytree(exported_dir, cut)
    data = (cut / "vq_params.safetensors").read_bytes()
    (cut / "vq_params.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="vq_params.safetensors: unreadable"):
        export.load(str(cut))
    from gptface_jax.serving import exported
    with pytest.raises(ExportError, match="vq_params.safetensors: unreadable"):
        exported.load(str(cut))


def test_export_files_share_one_mode(exported_dir):
    modes = {name: os.stat(os.path.join(exported_dir, name)).st_mode & 0o777 for name in os.listdir(exported_dir)}
    assert len(set(modes.values())) == 1, modes


def test_export_of_a_workdir_without_checkpoint_fails_before_writing(tmp_path):
    with pytest.raises(DataError, match="not a pre-training workdir"):
        export.export(str(tmp_path / "nothing"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_export_refuses_a_checkpoint_that_is_not_the_configs_model(trained_workdir, tmp_path):
    """A workdir whose config.json no longer describes its checkpoint is refused, never exported as another model."""
    import shutil
    workdir = tmp_path / "pretrain"
    shutil.copytree(trained_workdir, workdir)
    config = json.loads((workdir / "config.json").read_text())
    config["model"]["mlp_dim"] = 48
    (workdir / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match=r"mlp.*shape \(32, 64\) in the checkpoint, \(32, 48\) in the model"):
        export.export(str(workdir), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_flat_names_are_the_parameter_paths():
    flat = export.flatten({"block_0": {"attention": {"query": {"kernel": np.zeros((2, 3))}}}, "text_embed": np.ones(4)})
    assert sorted(flat) == ["block_0.attention.query.kernel", "text_embed"]
    from gptface_jax.serving.exported import unflatten
    assert unflatten(flat)["block_0"]["attention"]["query"]["kernel"].shape == (2, 3)


def test_scalar_parameters_keep_their_shape(tmp_path):
    """The ITC logit scale and bias are 0-d: written as (1,), the export would not load its own model."""
    from safetensors.numpy import load_file, save_file
    flat = export.flatten({"itc_log_scale": jax.numpy.float32(2.3), "itc_bias": np.array(-10.0, np.float32)})
    assert {k: v.shape for k, v in flat.items()} == {"itc_log_scale": (), "itc_bias": ()}
    save_file(flat, str(tmp_path / "p.safetensors"))
    assert load_file(str(tmp_path / "p.safetensors"))["itc_log_scale"].shape == ()


def test_manifest_lists_the_platforms_and_an_unknown_platform_is_an_error(trained_workdir, exported_dir, tmp_path):
    with open(os.path.join(exported_dir, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["platforms"] == {name: ["cpu", "cuda", "tpu"]
                                     for name in ("features", "itm_score", "vq_encode", "vq_decode")}
    with pytest.raises(export.ExportPlatformError, match=r"unknown export platforms \['rocm-9'\]"):
        export.export(trained_workdir, str(tmp_path / "x"), platforms=("cpu", "rocm-9"))
    assert not os.path.exists(tmp_path / "x")
