"""Pre-training end to end on tiny pre-tokenized SynthFaces: losses fall, resume reproduces,
NaN stops the run and keeps the last good checkpoint, a mismatched dataset is refused."""
import shutil

import numpy as np
import pytest

from data_pipelines import text_tokenizer as tt
from data_pipelines.errors import DataError
from data_pipelines.synthfaces.attributes import rng_for, sample_face
from data_pipelines.synthfaces.captions import make_caption
from gptface_jax import config_lib, trainer, vq_train
from gptface_jax.checkpoints import Checkpointer
from gptface_jax.metrics import read_metrics
from gptface_jax.pretokenize import pretokenize


@pytest.fixture(scope="module")
def pretokenized(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    vq_cfg = config_lib.load([
        "--config", "experiments/vq.py:tiny", "--config.data.image_size=32", "--config.data.num_train=64",
        "--config.data.num_test=16", "--config.vq.codebook_size=16", "--config.vq.code_dim=8",
        "--config.vq.channels=(8,16)", "--config.train.batch_size=16", "--config.train.steps=2",
        "--config.train.warmup_steps=1", "--config.train.time_budget_s=0"])
    vq_train.train(vq_cfg, str(root / "vq"))
    captions = [make_caption(sample_face(0, i), rng_for(0, i, 2)).text for i in range(600)]
    (root / "text.model").write_bytes(tt.train(captions, vocab_size=500))
    return pretokenize(str(root / "vq" / "data"), str(root / "text.model"), str(root / "vq"), str(root / "out"),
                       max_len=16, batch_size=16)


def _config(data, **overrides):
    args = ["--config", "experiments/pretrain.py:tiny", f"--config.data.pretokenized={data}",
            "--config.data.image_size=32", "--config.vq.codebook_size=16", "--config.text.max_len=16",
            "--config.model.num_layers=2", "--config.model.width=32", "--config.model.num_heads=4",
            "--config.model.mlp_dim=64", "--config.train.batch_size=16", "--config.train.warmup_steps=2",
            "--config.train.log_every=2", "--config.train.checkpoint_every=4", "--config.mesh.shape=(2,2,2)",
            "--config.train.learning_rate=3e-3"]
    return config_lib.load(args + [f"--config.{k}={v}" for k, v in overrides.items()])


def test_losses_fall_and_resume_reproduces(pretokenized, tmp_path):
    final = trainer.train(_config(pretokenized, **{"train.steps": 8}), str(tmp_path / "full"))
    rows = [r for r in read_metrics(str(tmp_path / "full")) if "text_loss" in r]
    assert rows[-1]["text_loss"] < rows[0]["text_loss"] and rows[-1]["image_loss"] < rows[0]["image_loss"]
    assert {"tflops_per_device", "samples_per_s", "tokens_per_s"} <= set(rows[-1])
    assert 0.0 <= final["eval_itm_auc"] <= 1.0 and final["eval_examples"] == 16
    # a run preempted after its step-4 checkpoint, then restarted with the same command
    shutil.copytree(tmp_path / "full", tmp_path / "resumed")
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "8")
    trainer.train(_config(pretokenized, **{"train.steps": 8}), str(tmp_path / "resumed"))
    a = read_metrics(str(tmp_path / "full"))
    b = read_metrics(str(tmp_path / "resumed"))
    loss = lambda rows, step: [r["loss"] for r in rows if r.get("step") == step and "loss" in r][-1]  # noqa: E731
    for step in (6, 8):  # steps after the resume see the same batches, masks and parameters
        np.testing.assert_allclose(loss(b, step), loss(a, step), rtol=1e-5)
    assert len([r for r in b if r.get("step") == 6 and "loss" in r]) == 2  # step 6 really ran twice


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(pretokenized, tmp_path):
    config = _config(pretokenized, **{"train.steps": 40, "train.learning_rate": 1e9, "train.grad_clip": 1e9,
                                       "train.warmup_steps": 0})
    with pytest.raises(trainer.NonFiniteLoss, match="non-finite metrics at step"):
        trainer.train(config, str(tmp_path / "nan"))
    latest = Checkpointer(str(tmp_path / "nan")).latest_step()
    assert latest is None or latest % 4 == 0  # only checked-finite steps were ever saved


def test_mismatched_pretokenized_data_is_refused(pretokenized, tmp_path):
    with pytest.raises(DataError, match="codebook size 16 but the config says vq.codebook_size=1024"):
        trainer.train(_config(pretokenized, **{"vq.codebook_size": 1024, "train.steps": 2}), str(tmp_path / "x"))
