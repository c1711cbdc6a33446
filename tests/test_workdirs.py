"""Workdirs: one run at a time, a dead run's lock taken over, stored paths usable from anywhere."""
import os
import signal
import subprocess
import sys
import time

import pytest

from gptface_jax.runtime import config_lib, layout, workdir_lock
from gptface_jax.serving import inference
from gptface_jax.train import trainer


def test_a_second_run_on_a_held_workdir_refuses_and_writes_nothing(pretokenized, tmp_path):
    workdir = tmp_path / "run"
    config = config_lib.load(["--config", "experiments/pretrain.py:tiny", f"--config.data.pretokenized={pretokenized}",
                              "--config.data.image_size=32", "--config.vq.codebook_size=16", "--config.text.max_len=16",
                              "--config.train.steps=2", "--config.train.warmup_steps=1", "--config.train.batch_size=8"])
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


def test_stored_paths_resolve_from_any_directory(tmp_path, monkeypatch):
    (tmp_path / "runs" / "demo" / "pretokenized").mkdir(parents=True)
    workdir = tmp_path / "runs" / "demo" / "pretrain"
    workdir.mkdir()
    monkeypatch.chdir("/")
    # written by an older version, relative to the directory training ran from (here tmp_path)
    assert inference.stored_path(str(workdir), "runs/demo/pretokenized") == str(tmp_path / "runs/demo/pretokenized")
    assert inference.stored_path(str(workdir), "/abs/data") == "/abs/data"
