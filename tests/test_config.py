"""Experiment configs: variants, absl overrides, and validation that fails before any compile."""
import subprocess
import sys

import pytest

from gptface_jax.runtime import config_lib

PRETRAIN = "experiments/pretrain.py"


def _load(variant="tiny", *overrides):
    return config_lib.load(["--config", f"{PRETRAIN}:{variant}", *overrides])


@pytest.mark.parametrize("variant,layers,width,grid",
                         [("tiny", 4, 128, 8), ("tiny16", 4, 128, 16), ("base", 12, 768, 16),
                                                     ("large", 24, 1024, 16)])
def test_variants_load_and_validate(variant, layers, width, grid):
    config = config_lib.validate(_load(variant), num_devices=8)
    assert (config.model.num_layers, config.model.width) == (layers, width)
    assert config.data.image_size // config.vq.downsample == grid


@pytest.mark.parametrize("recipe", ["tiny_paper", "quality"])
def test_recipes_change_only_their_fields(recipe):
    from experiments import pretrain
    shape, fields = pretrain.RECIPES[recipe]
    config = config_lib.validate(_load(recipe, "--config.train.steps=2000"), num_devices=8)
    base = _load(shape, "--config.train.steps=2000").to_dict()
    def flat(tree, p=""):
        return {k: v for key, value in tree.items() for k, v in (
            flat(value, f"{p}{key}.").items() if isinstance(value, dict) else [(f"{p}{key}", value)])}
    changed = {k for k, v in flat(config.to_dict()).items() if v != flat(base)[k]}
    assert changed == ({*fields} | {"variant"}) - {"train.steps"}
    with pytest.raises(AttributeError):
        config.train.new_field = 1


def test_overrides_apply_and_config_is_locked():
    config = _load("tiny", "--config.train.steps=100", "--config.mesh.shape=(4,2,1)")
    assert config.train.steps == 100
    assert tuple(config.mesh.shape) == (4, 2, 1)
    with pytest.raises(AttributeError):
        config.train.new_field = 1


@pytest.mark.parametrize("override,message", [
    ("--config.data.image_size=60", "data.image_size=60 is not divisible by vq.downsample=8"),
    ("--config.train.batch_size=30", "not divisible by the data-parallel size 8"),
    ("--config.mesh.axes=('data','model','tensor')", "unknown axis ['model']"),
    ("--config.mesh.shape=(3,1,1)", "uses 3 devices but 8 are present"),
    ("--config.model.num_heads=5", "model.width=128 is not divisible by model.num_heads=5"),
    ("--config.masking.mode_probs=(0.5,0.5,0.5)", "masking.mode_probs"),
    ("--config.train.warmup_steps=1000", "train.warmup_steps=1000"),
    ("--config.train.schedule_steps=10", "train.schedule_steps=10 must be 0 (train.steps) or > train.warmup_steps=30"),
    ("--config.train.accum_steps=3", "train.batch_size=32 is not divisible by train.accum_steps=3"),
    ("--config.vq.downsample=6", "power of two"),
    ("--config.loss.negative_fraction=0.0", "loss.negative_fraction=0.0 must be in (0, 1)"),
    ("--config.masking.generation_min_ratio=1.5", "generation_min_ratio=1.5 must be in [0, 1]"),
    ("--config.model.kernel_init=xavier", "model.kernel_init='xavier' must be 'normal' or 'fan_in'"),
    ("--config.model.residual_dtype=float16", "model.residual_dtype='float16' must be 'float32' or 'bfloat16'"),
    ("--config.loss.itm_weight=-1.0", "loss.itm_weight=-1.0 must be >= 0"),
    ("--config.train.divergence_factor=0.5", "train.divergence_factor=0.5 must be 0 (off) or > 1"),
    ("--config.model.itm_similarity=True", "model.itm_similarity=True reads the ITC embeddings"),
    ("--config.train.grad_clip=-1.0", "train.grad_clip=-1.0 must be > 0"),
    ("--config.train.bogus=1", "no field 'bogus'"),
    ("--config.train.steps=abc", "invalid literal"),
    ("--config.evals.probe.every=-1", "evals.probe.every=-1 must be an integer >= 1, or 0 (off)"),
])
def test_bad_values_are_reported_clearly(override, message):
    with pytest.raises(config_lib.ConfigError, match=None) as info:
        config_lib.validate(_load("tiny", override), num_devices=8)
    assert message in str(info.value)


def test_all_problems_reported_at_once():
    with pytest.raises(config_lib.ConfigError) as info:
        config_lib.validate(_load("tiny", "--config.data.image_size=60", "--config.model.num_heads=5"), 8)
    assert "image_size=60" in str(info.value) and "num_heads=5" in str(info.value)


def test_unknown_variant():
    with pytest.raises(config_lib.ConfigError, match="unknown pretrain variant 'huge'"):
        _load("huge")


def test_cli_rejects_bad_override_before_any_backend_starts():
    # No XLA backend initialised means nothing can have been compiled.
    code = ("import sys; from gptface_jax import cli; "
            f"rc = cli.main(['config', '--no-check-devices', '--config', '{PRETRAIN}:tiny', "
            "'--config.data.image_size=60']); "
            "from jax._src import xla_bridge; "
            "assert not xla_bridge._backends, 'a backend was initialised'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "data.image_size=60 is not divisible by vq.downsample=8" in proc.stderr


def test_cli_prints_a_valid_config():
    proc = subprocess.run([sys.executable, "-m", "gptface_jax.cli", "config", "--config", f"{PRETRAIN}:tiny",
                           "--config.train.steps=70"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "steps: 70" in proc.stdout


def test_cli_train_reports_a_mesh_that_does_not_fit_the_devices_cleanly(tmp_path, capsys):
    from gptface_jax import cli
    rc = cli.main(["train", "--workdir", str(tmp_path / "w"), "--config", f"{PRETRAIN}:tiny",
                   "--config.mesh.shape=(4,1,1)", "--config.data.pretokenized=/nonexistent"])
    assert rc == 2
    assert "mesh.shape=(4, 1, 1) uses 4 devices but 8 are present" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_cli_config_validates_a_vq_config_too(capsys):
    from gptface_jax import cli
    assert cli.main(["config", "--no-check-devices", "--config", "experiments/vq.py:tiny"]) == 0
    assert "codebook_size" in capsys.readouterr().out
    assert cli.main(["config", "--no-check-devices", "--config", "experiments/vq.py:tiny",
                     "--config.train.grad_clip=-1"]) == 2
    assert "train.grad_clip=-1" in capsys.readouterr().err


def test_an_evaluator_with_every_0_is_off():
    from gptface_jax.evals import evaluators
    config = config_lib.validate(_load("tiny", "--config.evals.probe.every=0", "--config.evals.itm.every=0",
                                       "--config.evals.retrieval.every=0"), num_devices=8)
    assert evaluators.build(config.evals, {}) == ()  # not built at all: a builder would read the context
    with pytest.raises(KeyError):
        evaluators.build(_load("tiny").evals, {})


def test_every_evaluator_the_schema_allows_has_a_builder():
    """config_lib validates `evals` from its schema; the evaluators room builds them. The two agree,
    so a config that validates never meets an unknown evaluator type at build time."""
    from gptface_jax.evals import evaluators
    from gptface_jax.serving import features
    assert set(evaluators.REGISTRY) == set(config_lib.EVALUATORS)
    assert features.FEATURES == config_lib.IMAGE_FEATURES
    with pytest.raises(KeyError, match="no entry in config_lib.EVALUATORS"):
        evaluators.register("not_in_the_schema")
