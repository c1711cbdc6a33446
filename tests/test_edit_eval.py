"""Edit evaluation: an independent pixel judge, and per-edit success / preservation / ITM rows."""
import json

import numpy as np
import pytest

from data_pipelines.errors import DataError
from data_pipelines.shards import ShardSource
from data_pipelines.synthfaces.attributes import ATTRIBUTES
from gptface_jax import attribute_classifier, edit_eval
from gptface_jax.downstream import load_labelled


def test_judge_learns_and_round_trips(synth_dir, tmp_path):
    judge = attribute_classifier.train(synth_dir, str(tmp_path / "judge"), steps=60, batch_size=32)
    info = json.load(open(tmp_path / "judge" / "classifier.json"))
    assert info["final_train_loss"] < 0.69 + np.log(5)  # below the loss of a uniform guess
    assert 0.0 <= info["test"]["attribute_mean_accuracy"] <= 1.0 and len(info["test"]["attributes"]) == 16
    images = load_labelled(synth_dir, "test", 64)["images"]
    reloaded = attribute_classifier.load(str(tmp_path / "judge"))
    np.testing.assert_allclose(reloaded.predict(images)[0], judge.predict(images)[0], atol=1e-6)
    with pytest.raises(DataError, match="no trained attribute classifier"):
        attribute_classifier.load(str(tmp_path))


def test_eligible_faces_lack_the_target():
    attrs = np.zeros((4, len(ATTRIBUTES)), np.int8)
    attrs[0, ATTRIBUTES.index("smiling")] = 1
    attrs[1, ATTRIBUTES.index("male")] = 1
    attrs[3, ATTRIBUTES.index("surgical_mask")] = 1
    np.testing.assert_array_equal(edit_eval.eligible(attrs, "smile"), [False, True, True, True])
    np.testing.assert_array_equal(edit_eval.eligible(attrs, "beard"), [False, True, False, False])
    np.testing.assert_array_equal(edit_eval.eligible(attrs, "remove_mask"), [False, False, False, True])


def test_edit_rows_keep_every_token_outside_the_region(trained_workdir, pretokenized, tmp_path):
    data = ShardSource(pretokenized, "train", verify=False).metadata["source_dataset"]
    attribute_classifier.train(data, str(tmp_path / "judge"), steps=10, batch_size=16)
    report = edit_eval.run(trained_workdir, data, str(tmp_path / "judge"), str(tmp_path), guidances=(0.0, 2.0),
                           faces_per_edit=3)
    rows = report["rows"]
    assert {r["guidance"] for r in rows} == {0.0, 2.0} and len({r["edit"] for r in rows}) >= 3
    for r in rows:
        assert r["unchanged_tokens"] == 1.0          # the decoder never touches tokens outside the region
        assert r["psnr_outside"] > 15.0              # only the half-cell fade band differs there
        assert 0.0 <= r["success"] <= 1.0 and np.isfinite(r["itm"])
    assert (tmp_path / "edits_eval.md").read_text().count("\n") == len(rows) + 2
