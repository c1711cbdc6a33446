"""Sweeps: products and zips of overrides, validated up front, launch commands and the table."""
import pytest

from gptface_jax import sweeps
from gptface_jax.runtime.config_lib import ConfigError


def test_product_and_zip():
    a = sweeps.sweep("train.learning_rate", [1e-3, 3e-3])
    b = sweeps.sweep("masking.image_ratio", [0.3, 0.5, 0.7])
    grid = sweeps.product(a, b)
    assert len(grid) == 6 and {"train.learning_rate": 3e-3, "masking.image_ratio": 0.7} in grid
    zipped = sweeps.zipit(sweeps.sweep("x.a", [1, 2]), sweeps.sweep("x.b", [3, 4]))
    assert zipped == [{"x.a": 1, "x.b": 3}, {"x.a": 2, "x.b": 4}]
    with pytest.raises(ConfigError, match="equal length"):
        sweeps.zipit(a, b)
    assert sweeps.format_value((0.5, 0.3, 0.2)) == "(0.5,0.3,0.2)" and sweeps.format_value((1,)) == "(1,)"


def test_declared_sweeps_plan_and_print(tmp_path, capsys):
    flags = ["--config", "experiments/pretrain.py:tiny", "--config.train.steps=70"]
    variants = sweeps.plan(flags, "itm", str(tmp_path))
    assert len(variants) == 4 and len({v["workdir"] for v in variants}) == 4
    assert sweeps.main(flags, "masking", str(tmp_path), print_only=True) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert all(line.startswith("gptface train --config experiments/pretrain.py:tiny") for line in lines)
    assert "--config.masking.text_ratio=0.25 --config.masking.image_ratio=0.5" in lines[1]
    assert "--config.train.steps=70" in lines[0]


def test_every_bad_variant_is_reported_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError) as e:
        sweeps.plan(["--config", "experiments/pretrain.py:tiny", "--config.train.steps=0"], "lr", str(tmp_path))
    assert "learning_rate=0.001" in str(e.value) and "learning_rate=0.003" in str(e.value)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="declares no sweep 'nope'"):
        sweeps.plan(["--config", "experiments/pretrain.py:tiny"], "nope", str(tmp_path))
    with pytest.raises(ConfigError, match="declares no sweeps"):
        sweeps.plan(["--config", "experiments/vq.py:tiny"], "lr", str(tmp_path))
