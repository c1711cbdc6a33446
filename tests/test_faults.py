"""Fault scenarios end to end on tiny shapes: a run killed mid-save resumes to the same losses, two
runs on one workdir, a resume that would change the model, a workdir moved with its data, a
corrupt latest checkpoint, a diverging run, a corrupt held-out split."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest

from data_pipelines.errors import DataError
from gptface_jax.runtime import layout, workdir_lock
from gptface_jax.runtime.checkpoints import Checkpointer, CheckpointMismatch
from gptface_jax.runtime.metrics import read_metrics
from gptface_jax.serving import inference
from gptface_jax.train import train_loop, trainer
from tests.test_trainer import CONFIG_FIELDS, _config, _losses
from tests.test_training_core import _restore_everything


def _cli_flags(data, **overrides) -> list[str]:
    fields = {**CONFIG_FIELDS, "data.pretokenized": data, **overrides}
    return ["--config", "experiments/pretrain.py:tiny", *(f"--config.{k}={v}" for k, v in fields.items())]


# dropout on: masks resume too; the cool-down begins at the step-4 checkpoint the resumed runs start from
RESUMABLE = {"train.steps": 8, "train.checkpoint_every": 4, "model.dropout": 0.1, "train.cooldown_steps": 4}


@pytest.fixture(scope="module")
def uninterrupted(pretokenized, tmp_path_factory):
    """The 8-step run the interrupted ones are compared with: (workdir, final metrics)."""
    workdir = tmp_path_factory.mktemp("uninterrupted") / "full"
    final = trainer.train(_config(pretokenized, **RESUMABLE), str(workdir))
    return workdir, final


@pytest.mark.slow
def test_a_run_killed_mid_save_resumes_to_the_same_losses(pretokenized, uninterrupted, tmp_path):
    """kill -9 as the step-4 checkpoint is being written (async save), then the same command again."""
    workdir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "gptface_jax.cli", "train", *_cli_flags(pretokenized, **RESUMABLE),
                             "--workdir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        saves = workdir / layout.CHECKPOINTS
        if saves.is_dir() and any(p.name.startswith("4") for p in saves.iterdir()):
            break  # the step-4 save has begun (orbax writes a temporary directory first)
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before its step-4 save: nothing was killed"
    trainer.train(_config(pretokenized, **RESUMABLE), str(workdir))
    full, resumed = _losses(uninterrupted[0]), _losses(workdir)
    assert sorted(resumed) == sorted(full)
    for step in full:
        np.testing.assert_allclose(resumed[step], full[step], rtol=1e-5)


def test_a_second_run_on_a_held_workdir_refuses_and_writes_nothing(pretokenized, tmp_path):
    workdir = tmp_path / "run"
    config = _config(pretokenized, **{"train.steps": 2})
    with workdir_lock.exclusive(str(workdir)):
        with pytest.raises(workdir_lock.WorkdirBusy, match=rf"in use by another run \(pid {os.getpid()} on "):
            trainer.train(config, str(workdir))
    assert sorted(os.listdir(workdir)) == [layout.LOCK]


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from gptface_jax.runtime import workdir_lock\n"
        f"with workdir_lock.exclusive({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(workdir_lock.WorkdirBusy, match=f"pid {holder.pid}"):
        with workdir_lock.exclusive(str(tmp_path)):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    started = time.time()
    with workdir_lock.exclusive(str(tmp_path)):  # no stale lock survives the process
        assert time.time() - started < 1
    with workdir_lock.exclusive(str(tmp_path)):  # and the lock is released after the block
        pass


@pytest.mark.slow
def test_a_refused_multi_process_job_stops_on_every_process(pretokenized, tmp_path):
    """Process 0 is refused the lock; process 1 must not wait for it at its first collective."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    workdir = tmp_path / "two"
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "2"}
    command = [sys.executable, "-m", "gptface_jax.cli", "train",
               *_cli_flags(pretokenized, **{"train.steps": 2, "mesh.shape": "(-1,1,1)", "data.num_shards": 2}),
               "--workdir", str(workdir), "--coordinator-address", f"localhost:{port}", "--num-processes", "2"]
    with workdir_lock.exclusive(str(workdir)):
        procs = [subprocess.Popen([*command, "--process-id", str(i)], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for i in range(2)]
        outs = [p.communicate(timeout=240)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 2 and "in use by another run" in out, out[-2000:]
    assert sorted(os.listdir(workdir)) == [layout.LOCK]


def test_locate_finds_recorded_paths_after_a_move(tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    (tmp_path / "runs" / "demo" / "pretokenized" / "v1").mkdir(parents=True)
    workdir = tmp_path / "runs" / "demo" / "pretrain"
    workdir.mkdir()
    # older workdirs: relative to the directory training ran from (here tmp_path)
    assert layout.locate("runs/demo/pretokenized", str(workdir)) == str(tmp_path / "runs/demo/pretokenized")
    # an absolute path that still exists is kept, one that is gone and cannot be found is returned as is
    assert layout.locate(str(tmp_path / "runs"), "/elsewhere") == str(tmp_path / "runs")
    assert layout.locate("/gone/away/data", str(workdir)) == "/gone/away/data"
    # recorded at /old/site/demo/...: the whole demo tree now lives under tmp_path/runs
    assert layout.locate("/old/site/demo/pretokenized/v1", str(workdir)) == str(tmp_path / "runs/demo/pretokenized/v1")
    # a relative path comes back absolute, found from the workdir, even where the current directory has it
    monkeypatch.chdir(tmp_path)
    assert layout.locate("runs/demo/pretokenized", str(workdir)) == str(tmp_path / "runs/demo/pretokenized")


@pytest.mark.slow
def test_a_workdir_moved_with_its_data_loads_from_anywhere(trained_workdir, pretokenized, tmp_path, monkeypatch):
    """A demo-like tree (pretrain/, pretokenized/, vq/) whose files record where it was, moved elsewhere."""
    old = tmp_path / "old" / "demo"
    data = old / "pretokenized"
    shutil.copytree(pretokenized, data)
    vq_dir = _beside_an_ancestor(pretokenized, "vq")
    shutil.copytree(vq_dir, old / "vq")
    shutil.copytree(trained_workdir, old / "pretrain", ignore=shutil.ignore_patterns(layout.LOCK))
    config = json.loads((old / "pretrain" / layout.CONFIG).read_text())
    config["data"]["pretokenized"] = str(data)
    (old / "pretrain" / layout.CONFIG).write_text(json.dumps(config))
    metadata_file = next(data.rglob("metadata.json"))
    metadata = json.loads(metadata_file.read_text())
    metadata["vq_workdir"] = str(old / "vq")
    metadata_file.write_text(json.dumps(metadata))
    new = tmp_path / "elsewhere" / "renamed"
    new.parent.mkdir()
    os.rename(old, new)
    monkeypatch.chdir("/")
    pretrained = inference.load(str(new / "pretrain"))
    assert pretrained.config.data.pretokenized == str(new / "pretokenized")
    codes = pretrained.image_codes(np.zeros((1, pretrained.image_size, pretrained.image_size, 3), np.uint8))
    assert codes.shape == (1, pretrained.grid ** 2)
    # the data's own tokenizers, not just their sizes: another SentencePiece model, or a VQ retrained in
    # place, is refused by name
    tokenizer_file = next((new / "pretokenized").rglob(layout.TOKENIZER))
    original = tokenizer_file.read_bytes()
    tokenizer_file.write_bytes(original + b"\0")
    with pytest.raises(DataError, match=f"{layout.TOKENIZER} differs from the one .* trained with"):
        inference.load(str(new / "pretrain"))
    tokenizer_file.write_bytes(original)
    codebook_file = tokenizer_file.parent / layout.CODEBOOK
    codebook = np.load(codebook_file)
    (new / "pretrain" / layout.TOKENIZERS).unlink()   # as a workdir from before the record: the VQ check alone
    np.save(codebook_file, codebook[::-1])
    with pytest.raises(DataError, match="code vectors are not those the shards .* were tokenized with"):
        inference.load(str(new / "pretrain"))


def _beside_an_ancestor(path: str, sibling: str) -> str:
    """The `sibling` folder beside the nearest ancestor of `path` that has one."""
    here = os.path.abspath(path)
    while not os.path.isdir(os.path.join(here, sibling)):
        here = os.path.dirname(here)
    return os.path.join(here, sibling)


@pytest.mark.slow
def test_a_corrupt_latest_checkpoint_is_skipped_and_a_changed_model_refused(pretokenized, uninterrupted, tmp_path,
                                                                            capsys):
    """With dropout on: the resumed steps draw the same masks as the uninterrupted run."""
    config = _config(pretokenized, **RESUMABLE)
    shutil.copytree(uninterrupted[0], tmp_path / "full")
    final = uninterrupted[1]
    rows = [r for r in read_metrics(str(tmp_path / "full")) if "text_loss" in r]
    assert rows[-1]["text_loss"] < rows[0]["text_loss"] and rows[-1]["image_loss"] < rows[0]["image_loss"]
    assert {"tflops_per_device", "xla_tflops_per_device", "samples_per_s", "tokens_per_s"} <= set(rows[-1])
    assert 0.0 <= final["eval_itm_weak_auc"] <= 1.0 and final["eval_itm_weak_pairs"] == 32
    # a run whose step-8 checkpoint was damaged on disk, restarted with the same command: it says so,
    # moves step 8 aside and resumes from step 4
    shutil.copytree(tmp_path / "full", tmp_path / "resumed")
    files = [f for f in (tmp_path / "resumed" / "checkpoints" / "8" / "state").rglob("*") if f.is_file()]
    for f in files:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    trainer.train(config, str(tmp_path / "resumed"))
    assert "checkpoint step 8 cannot be read" in capsys.readouterr().out
    assert (tmp_path / "resumed" / "checkpoints_unreadable" / "8").is_dir()
    a = read_metrics(str(tmp_path / "full"))
    b = read_metrics(str(tmp_path / "resumed"))
    def loss(rows, step):
        return [r["loss"] for r in rows if r.get("step") == step and "loss" in r][-1]
    for step in (6, 8):  # steps after the resume see the same batches, masks and parameters
        np.testing.assert_allclose(loss(b, step), loss(a, step), rtol=1e-5)
    # the killed run's rows past the restored step 4 are gone: each step once, from the run that resumed
    assert [r["step"] for r in b if "loss" in r] == [r["step"] for r in a if "loss" in r]
    assert min(r["time"] for r in b if r["step"] > 4) > max(r["time"] for r in a)  # step 6 really ran again
    # a resume whose config changes the model is refused before the workdir is touched
    saved_config = (tmp_path / "full" / "config.json").read_text()
    smaller = _config(pretokenized, **{"train.steps": 12, "model.num_layers": 1})
    with pytest.raises(CheckpointMismatch, match=r"block_1.*in the checkpoint, not in the model"):
        trainer.train(smaller, str(tmp_path / "full"))
    assert (tmp_path / "full" / "config.json").read_text() == saved_config
    assert Checkpointer(str(tmp_path / "full")).latest_step() == 8


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(pretokenized, tmp_path):
    config = _config(pretokenized, **{"train.steps": 40, "train.learning_rate": 1e9, "train.grad_clip": 1e9,
                                       "train.warmup_steps": 0, "train.checkpoint_every": 1,
                                       "train.divergence_factor": 0.0})  # the NaN guard alone
    with pytest.raises(train_loop.NonFiniteLoss, match="non-finite metrics at step"):
        trainer.train(config, str(tmp_path / "nan"))
    step, state = _restore_everything(tmp_path / "nan")
    assert step is not None and int(state["step"]) == step  # only checked-finite steps were ever saved
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(state))


@pytest.mark.slow
def test_a_finite_divergence_stops_before_it_is_saved(pretokenized, tmp_path):
    """At lr 1e6 the weights explode while every metric stays finite; no exploded state is kept."""
    config = _config(pretokenized, **{"train.steps": 12, "train.learning_rate": 1e6, "train.warmup_steps": 4,
                                       "train.checkpoint_every": 1, "train.log_every": 1})
    with pytest.raises(train_loop.Diverged, match=r"diverged at step \d+: the parameter norm .* over 10x its start"):
        trainer.train(config, str(tmp_path / "run"))
    step, state = _restore_everything(tmp_path / "run")
    rows = [r for r in read_metrics(str(tmp_path / "run")) if "param_norm" in r]
    start = rows[0]["param_norm"]
    assert step is not None and step < 12
    assert float(optax.tree.norm(state["params"])) < 10 * start


def test_a_corrupt_test_split_is_an_error_not_silently_no_evaluation(pretokenized, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(pretokenized, data)
    shard = sorted(data.rglob("*test*array_record*"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(DataError, match="test.*(truncated|unreadable|corrupt)"):
        trainer.train(_config(str(data), **{"train.steps": 2}), str(tmp_path / "x"))
    assert not (tmp_path / "x" / "config.json").exists()
