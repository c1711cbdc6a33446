"""The PyTorch reference of an export (serving/torch_model.py) computes what the JAX model computes.

Needs the [torch] extra (`make test-torch` installs it); skipped with that reason where it is missing.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install -e '.[torch]' (make test-torch)")

from safetensors.numpy import load_file, save_file  # noqa: E402

from data_pipelines import text_tokenizer  # noqa: E402
from gptface_jax.serving import export, torch_check, torch_model  # noqa: E402
from gptface_jax.serving.export_format import ExportError  # noqa: E402

# A model with every head the reference implements: ITC embeddings, the similarity in the match
# logit, untied vocabulary heads, the caption-token head on the ITC text embedding.
ITC_FIELDS = {"model.itc_dim": 16, "model.itm_similarity": True, "model.kernel_init": "fan_in",
              "model.tie_heads": False, "loss.itc_weight": 1.0, "model.itc_words": True, "loss.itc_word_weight": 1.0}


@pytest.fixture(scope="module")
def itc_export(pretokenized, tmp_path_factory) -> str:
    """Two training steps of a 1-layer GPTFace with ITC on the `pretokenized` data, exported for the CPU."""
    from gptface_jax.runtime import config_lib
    from gptface_jax.train import trainer
    root = tmp_path_factory.mktemp("torch")
    fields = {"data.pretokenized": pretokenized, "data.image_size": 32, "vq.codebook_size": 16, "text.max_len": 16,
              "model.num_layers": 1, "model.width": 32, "model.num_heads": 4, "model.mlp_dim": 64,
              "train.batch_size": 16, "train.warmup_steps": 1, "train.steps": 2, "mesh.shape": "(-1,1,1)",
              **ITC_FIELDS}
    trainer.train(config_lib.load(["--config", "experiments/pretrain.py:tiny",
                                   *(f"--config.{k}={v}" for k, v in fields.items())]), str(root / "pretrain"))
    export.export(str(root / "pretrain"), str(root / "export"), platforms=("cpu",))
    return str(root / "export")


def _randomised(directory: str, out: str, seed: int = 0) -> str:
    """A copy of an export whose every parameter is redrawn N(0, 0.5): no path of either model hides
    behind near-zero initial weights."""
    shutil.copytree(directory, out)
    rng = np.random.default_rng(seed)
    for name in ("params.safetensors", "vq_params.safetensors"):
        tensors = load_file(os.path.join(out, name))
        save_file({k: rng.normal(0.0, 0.5, v.shape).astype(np.float32) for k, v in tensors.items()},
                  os.path.join(out, name))
    return out


def _assert_close(differences: dict):
    assert {"features.cls", "features.mean", "itm_score", "itc_text", "itc_image", "itc_similarity",
            "token_logits.text", "token_logits.image", "vq.code_scores", "vq.decode_float"} == set(differences)
    above = {name: value for name, value in differences.items() if not value <= 1e-5}
    assert not above, f"PyTorch and JAX differ by more than 1e-5 (relative): {above}"


def test_trained_parameters_agree_with_jax(itc_export):
    _assert_close(torch_check.compare(itc_export))


def test_random_parameters_agree_with_jax(itc_export, tmp_path):
    _assert_close(torch_check.compare(_randomised(itc_export, str(tmp_path / "random"))))


def test_codes_and_pixels_agree_exactly(itc_export, tmp_path):
    """vq encode picks the same codes and decode the same uint8 pixels (up to one step of rounding)."""
    directory = _randomised(itc_export, str(tmp_path / "random"), seed=1)
    loaded = export.load(directory)
    batch = torch_check.fixed_batch(loaded.model.config, loaded.vq_config.image_size, batch=8)
    from gptface_jax.serving import exported
    reference = exported.load(directory)
    m = torch_model.load(directory)
    with torch.no_grad():
        codes = m.vq.encode(torch.from_numpy(batch["images"])).numpy()
        pixels = m.vq.decode(torch.from_numpy(codes)).numpy()
    np.testing.assert_array_equal(codes, np.asarray(reference.encode_images(batch["images"])))
    assert np.abs(pixels.astype(int) - np.asarray(reference.decode_codes(codes)).astype(int)).max() <= 1


def test_a_missing_or_misshaped_tensor_is_an_error_naming_it(itc_export, tmp_path):
    directory = shutil.copytree(itc_export, tmp_path / "broken")
    path = os.path.join(directory, "params.safetensors")
    tensors = load_file(path)
    del tensors["itc_text_proj"]
    tensors["block_0.mlp_in.kernel"] = tensors["block_0.mlp_in.kernel"][:, :8]
    save_file(tensors, path)
    with pytest.raises(ExportError) as error:
        torch_model.load(str(directory))
    assert "itc_text_proj: missing" in str(error.value) and "block_0.mlp_in.kernel: stored [32, 8]" in str(error.value)


def test_special_ids_are_the_text_tokenizers():
    assert (torch_model.PAD, torch_model.CLS, torch_model.SEP) == (text_tokenizer.PAD, text_tokenizer.CLS,
                                                                 text_tokenizer.SEP)


# The README's example, run from inside the export directory in a fresh interpreter.
README_EXAMPLE = """
import json, sys
import numpy as np, torch
import torch_model
m = torch_model.load(".")
codes = m.vq.encode(torch.from_numpy(np.load(sys.argv[1])))
with torch.no_grad():
    feats = m.model.features(codes)
    log_odds = m.model.itm_score(torch.from_numpy(m.text_ids(["a smiling woman"] * len(codes))), codes)
print(json.dumps({"cls": list(feats["cls"].shape), "log_odds": list(log_odds.shape),
                  "modules": sorted(n for n in sys.modules if n.split(".")[0] in ("jax", "flax", "gptface_jax"))}))
"""


def test_the_export_loads_in_pytorch_without_jax(itc_export, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "faces.npy", images)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", README_EXAMPLE, str(tmp_path / "faces.npy")], cwd=itc_export,
                         env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"cls": [3, 32], "log_odds": [3], "modules": []}


def test_cli_torch_check_reports_every_function(trained_workdir, tmp_path, capsys):
    from gptface_jax import cli
    assert cli.main(["export", "--workdir", trained_workdir, "--out", str(tmp_path / "e"), "--platforms", "cpu",
                     "--torch-check"]) == 0
    printed = capsys.readouterr().out
    for name in ("features.cls", "itm_score", "token_logits.image", "vq.code_scores", "vq.decode_float"):
        assert name in printed
    assert "ABOVE" not in printed
