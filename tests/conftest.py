"""Test setup: 8 virtual CPU devices before JAX starts and one compilation cache for the run."""
import os
import shutil
import tempfile

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Many tests compile the same programs (a train step of the same tiny config, the same decoder); one
# persistent cache, made by the first process and inherited by the xdist workers and the subprocesses
# tests start, compiles each once. It is private to the run (mkdtemp) and removed at its end.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE = tempfile.mkdtemp(prefix="gptface-tests-xla-")
else:
    _OWN_CACHE = None

import pytest  # noqa: E402

from data_pipelines.synthfaces import builder  # noqa: E402


@pytest.fixture(scope="package")  # built once for the whole tests package
def synth_dir(tmp_path_factory) -> str:
    """A small SynthFaces dataset shared by the read-side tests (2 train shards, 1 test shard)."""
    root = tmp_path_factory.mktemp("synth")
    return builder.build(str(root), num=96, num_test=16, image_size=64, seed=3, workers=1, num_shards=2)


@pytest.fixture(scope="package")  # built once for the whole tests package
def pretokenized(tmp_path_factory):
    """A tiny VQ (32 px, 16 codes) + SentencePiece model, and SynthFaces pre-tokenized with them."""
    from data_pipelines import text_tokenizer as tt
    from data_pipelines.synthfaces.attributes import rng_for, sample_face
    from data_pipelines.synthfaces.captions import make_caption
    from gptface_jax.runtime import config_lib
    from gptface_jax.train import vq_train
    from gptface_jax.train.pretokenize import pretokenize
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


@pytest.fixture(scope="package")  # built once for the whole tests package
def trained_workdir(pretokenized, tmp_path_factory) -> str:
    """Two steps of a 1-layer GPTFace on the `pretokenized` data: a real checkpoint workdir. Its config
    names the folder `pretokenize` was asked to write into, as `make quality` does, not the dataset
    folder it wrote a few levels down."""
    from pathlib import Path

    from gptface_jax.runtime import config_lib
    from gptface_jax.train import trainer
    workdir = tmp_path_factory.mktemp("trained") / "pretrain"
    fields = {"data.pretokenized": Path(pretokenized).parents[2], "data.image_size": 32, "vq.codebook_size": 16,
              "text.max_len": 16,
              "model.num_layers": 1, "model.width": 32, "model.num_heads": 4, "model.mlp_dim": 64,
              "train.batch_size": 16, "train.warmup_steps": 1, "train.steps": 2, "mesh.shape": "(-1,1,1)"}
    config = config_lib.load(["--config", "experiments/pretrain.py:tiny",
                              *(f"--config.{k}={v}" for k, v in fields.items())])
    config.evals.probe.every = 0  # its fits cost more than the two steps; test_trainer.py runs it
    trainer.train(config, str(workdir))
    return str(workdir)


# Fixtures that train a tokenizer or a model first: every test using one is `slow`.
TRAINING_FIXTURES = {"pretokenized", "trained_workdir"}


def pytest_collection_modifyitems(config, items):
    """Tests that need a trained model are marked `slow`; tests marked `gpu` are skipped where JAX
    has no GPU (`make test-fast` leaves out both)."""
    import jax
    skip_gpu = None if jax.devices()[0].platform == "gpu" else pytest.mark.skip(reason="needs a GPU")
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if skip_gpu and "gpu" in item.keywords:
            item.add_marker(skip_gpu)


def pytest_unconfigure(config):
    if _OWN_CACHE and not hasattr(config, "workerinput"):  # the process that made it
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
