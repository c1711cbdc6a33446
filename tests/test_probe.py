"""Linear probes can succeed and can fail; the probe table runs on a real checkpoint with its baselines."""
import json

import numpy as np
import pytest

from data_pipelines.errors import DataError
from data_pipelines.shards import ShardError
from gptface_jax.evals import downstream, probe
from gptface_jax.evals.probe import Split, probe_attributes, probe_classes


def _linear_data(rng, n, d=24, attributes=3, classes=4):
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x[:, :attributes] + 0.05 * rng.normal(size=(n, attributes)) > 0).astype(np.int64)
    c = np.argmax(x[:, attributes:attributes + classes], axis=1)
    return x, y, c


@pytest.mark.slow
def test_probe_reads_linear_labels_and_stays_at_chance_on_shuffled_ones():
    rng = np.random.default_rng(0)
    (xt, yt, ct), (xv, yv, cv), (xs, ys, cs) = (_linear_data(rng, n) for n in (600, 200, 400))
    attrs = probe_attributes(Split(xt, yt), Split(xv, yv), Split(xs, ys))
    assert attrs["accuracy"].min() > 0.95
    classes = probe_classes(Split(xt, ct), Split(xv, cv), Split(xs, cs), 4)
    assert classes["accuracy"] > 0.9 and classes["per_class"].min() > 0.8
    # labels shuffled in every split carry nothing the features know: the probe must stay at chance
    p = rng.permutation
    shuffled = probe_attributes(Split(xt, p(yt)), Split(xv, p(yv)), Split(xs, p(ys)))
    assert np.abs(shuffled["accuracy"] - 0.5).max() < 0.08
    shuffled = probe_classes(Split(xt, p(ct)), Split(xv, p(cv)), Split(xs, p(cs)), 4)
    assert abs(shuffled["accuracy"] - 0.25) < 0.08


def test_fits_padded_to_shared_shapes_equal_the_unpadded_fits():
    """Rows and columns are padded to powers of two so fits share compiled programs; the weights are
    those of L-BFGS on the data as given, to the solver's tolerance (it stops at gradient norm 1e-5;
    the padded sums round differently)."""
    import jax.numpy as jnp
    rng = np.random.default_rng(2)
    x, y, c = _linear_data(rng, 51, d=24)
    x[:5] *= 3.0   # not standardised: the padding must not depend on it
    decay = np.asarray([1e-3, 1e-2, 1e-1], np.float32)
    got = probe.fit_binary(x, y, decay)
    want = probe._lbfgs("binary", jnp.asarray(x), jnp.asarray(y, jnp.int32), jnp.asarray(decay))
    assert got["w"].shape == (24, 3)
    np.testing.assert_allclose(got["w"], want["w"], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(got["b"], want["b"], rtol=1e-3, atol=1e-3)
    got = probe.fit_softmax(x, c, 1e-2, 4)
    want = probe._lbfgs("softmax", jnp.asarray(x), jnp.asarray(c, jnp.int32), jnp.full((4,), 1e-2, jnp.float32))
    np.testing.assert_allclose(got["w"], want["w"], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(got["b"], want["b"], rtol=1e-3, atol=1e-3)


def test_unknown_labels_are_left_out():
    rng = np.random.default_rng(1)
    (xt, yt, _), (xv, yv, _), (xs, ys, _) = (_linear_data(rng, n) for n in (400, 100, 200))
    yt[::2, 0] = -1  # half the training labels of attribute 0 unknown
    ys[:, 2] = -1    # attribute 2 never labelled on test: no accuracy rather than a made-up one
    acc = probe_attributes(Split(xt, yt), Split(xv, yv), Split(xs, ys))["accuracy"]
    assert acc[0] > 0.9 and np.isnan(acc[2])


@pytest.mark.slow
def test_probe_table_on_a_checkpoint(trained_workdir, pretokenized, tmp_path):
    data = _synth_dir_of(pretokenized)
    report = downstream.probe(trained_workdir, data, str(tmp_path))
    rows = report["results"]
    assert set(rows) == {"gptface_cls", "gptface_mean", "random_init_cls", "random_init_mean", "pixels_16x16",
                         "vq_code_vectors"}
    for row in rows.values():
        assert 0.0 <= row["attribute_mean_accuracy"] <= 1.0 and 0.0 <= row["expression_accuracy"] <= 1.0
        assert len(row["attributes"]) == 16 and len(row["expression_per_class"]) == 5
        assert 0.0 <= row["hair_colour_accuracy"] <= 1.0      # SynthFaces labels hair colour too
    # validation carved from train (SynthFaces has no validation split), test untouched
    assert report["examples"]["test"] == 16 and report["examples"]["train"] + report["examples"]["validation"] == 64
    written = json.load(open(tmp_path / "probe_synth_faces.json"))
    assert written["results"]["pixels_16x16"] == rows["pixels_16x16"]
    table = (tmp_path / "probe_synth_faces.md").read_text()
    assert "| gptface_cls |" in table
    assert "16 faces; accuracies closer than 0.250 are within noise" in table  # 2 * sqrt(0.25 / 16)


def _synth_dir_of(pretokenized) -> str:
    from data_pipelines.shards import ShardSource
    return ShardSource(pretokenized, "train", verify=False).metadata["source_dataset"]


def test_probe_errors_name_the_problem(trained_workdir, tmp_path):
    with pytest.raises(ShardError, match="no such dataset folder"):
        downstream.probe(trained_workdir, str(tmp_path / "missing"))
    from data_pipelines.synthfaces import builder
    no_test = builder.build(str(tmp_path / "nt"), num=8, num_test=0, image_size=32, seed=1, workers=1)
    with pytest.raises(DataError, match="'test' split"):
        downstream.probe(trained_workdir, no_test)


@pytest.mark.slow
def test_finetune_trains_the_whole_model_and_reports_test_accuracy(trained_workdir, pretokenized, tmp_path):
    from gptface_jax.evals import finetune
    result = finetune.finetune(trained_workdir, _synth_dir_of(pretokenized), str(tmp_path), steps=24, batch_size=16,
                               learning_rate=3e-3, eval_every=8)
    history = result["history"]
    assert [h["step"] for h in history] == [8, 16, 24]
    assert history[-1]["validation_loss"] < history[0]["validation_loss"]  # the head and body learn
    assert 0 <= result["test_attribute_mean_accuracy"] <= 1 and 0 <= result["test_expression_accuracy"] <= 1
    assert len(result["test_attributes"]) == 16
    assert json.load(open(tmp_path / "finetune_synth_faces.json"))["best_step"] == result["best_step"]


@pytest.mark.slow
def test_finetune_baseline_starts_from_the_initialisation(trained_workdir, pretokenized, tmp_path):
    from gptface_jax.evals import finetune
    def run(init):
        return finetune.finetune(trained_workdir, _synth_dir_of(pretokenized), str(tmp_path), steps=8, batch_size=16,
                                 learning_rate=3e-3, eval_every=8, init=init)
    pretrained, random = run("pretrained"), run("random")
    assert random["init"] == "random" and (tmp_path / "finetune_synth_faces_random_init.json").exists()
    # same data, steps and head: only the body's starting point differs, and it shows
    assert pretrained["history"][0]["validation_loss"] != random["history"][0]["validation_loss"]
    with pytest.raises(ValueError, match="init='imagenet'"):
        finetune.finetune(trained_workdir, _synth_dir_of(pretokenized), str(tmp_path), steps=1, init="imagenet")
