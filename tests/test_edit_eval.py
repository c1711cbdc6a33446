"""Edit evaluation: an independent pixel judge, and per-edit success / preservation / ITM rows."""
import dataclasses
import json

import numpy as np
import pytest

from data_pipelines.errors import DataError
from data_pipelines.shards import ShardSource
from data_pipelines.synthfaces.attributes import ATTRIBUTES
from gptface_jax.evals import attribute_classifier, edit_eval, text_to_face_eval
from gptface_jax.evals.downstream import load_labelled
from gptface_jax.generate.decode_config import default_config, guidance_grid

pytestmark = pytest.mark.slow  # the module trains a judge and a model first


def test_judge_learns_and_round_trips(synth_dir, tmp_path):
    judge = attribute_classifier.train(synth_dir, str(tmp_path / "judge"), steps=60, batch_size=32)
    info = json.load(open(tmp_path / "judge" / "classifier.json"))
    assert info["final_train_loss"] < 0.69 + 2 * np.log(5)  # below a uniform guess (attributes, expression, hair)
    assert 0.0 <= info["test"]["attribute_mean_accuracy"] <= 1.0 and len(info["test"]["attributes"]) == 16
    images = load_labelled(synth_dir, "test", 64)["images"]
    reloaded = attribute_classifier.load(str(tmp_path / "judge"))
    for name, probs in judge.predict_all(images).items():  # attributes, expression and hair colour
        np.testing.assert_allclose(reloaded.predict_all(images)[name], probs, atol=1e-6)
    assert set(judge.predict_all(images)) == {"attributes", "expression", "hair_colour"}
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
    # hair colour: another colour, visible (not bald, no hat); nothing without hair labels
    attrs[2, ATTRIBUTES.index("hat")] = 1
    hair = np.array([0, 2, 1, 3])   # black, blond, brown (hat), red
    np.testing.assert_array_equal(edit_eval.eligible(attrs, "hair_black", hair), [False, True, False, True])
    np.testing.assert_array_equal(edit_eval.eligible(attrs, "hair_blond", hair), [True, False, False, True])
    assert not edit_eval.eligible(attrs, "hair_black").any()
    # an expression: another one, mouth not hidden by a mask; nothing without expression labels
    expression = np.array([3, 0, 1, 0])  # surprised, neutral, happy, neutral (masked)
    np.testing.assert_array_equal(edit_eval.eligible(attrs, "surprised", expression=expression),
                                  [False, True, True, False])
    assert not edit_eval.eligible(attrs, "surprised").any()


def test_edit_rows_keep_every_token_outside_the_region(trained_workdir, pretokenized, tmp_path):
    data = ShardSource(pretokenized, "train", verify=False).metadata["source_dataset"]
    attribute_classifier.train(data, str(tmp_path / "judge"), steps=10, batch_size=16)
    report = edit_eval.run(trained_workdir, None, str(tmp_path / "judge"), str(tmp_path), guidances=(0.0, 2.0),
                           faces_per_edit=3, text_to_face_samples=4)
    assert report["dataset"] == data  # no folder given: the one the shards were made from
    rows = report["rows"]
    assert {(r["guidance"], r["cfg_scale"]) for r in rows} == {(0.0, 0.0),
                                                               (2.0, 0.0)} and len({r["edit"] for r in rows}) >= 3
    for r in rows:
        assert r["unchanged_tokens"] == 1.0          # the decoder never touches tokens outside the region
        assert r["psnr_outside"] > 15.0              # only the half-cell fade band differs there
        assert 0.0 <= r["success"] <= 1.0 and np.isfinite(r["itm"])
        assert 0.0 <= r["success_neutral"] <= 1.0 and r["lift"] == r["success"] - r["success_neutral"]
    generated = report["text_to_face"]
    wanted = {(a, g) for a in text_to_face_eval.PROMPTS for g in (0.0, 2.0)}
    assert {(r["attribute"], r["guidance"]) for r in generated} == wanted
    assert report["judge"]["hair_colour_names"] == ["black", "brown", "blond", "red", "grey"]
    assert 0.0 <= report["judge"]["test"]["hair_colour_accuracy"] <= 1.0
    # text-to-face rows sample as `gptface generate` does (w = 3, one draw), whatever the edits use
    assert report["text_to_face_decoding"] == dataclasses.asdict(default_config("generate"))
    assert {r["cfg_scale"] for r in generated} == {default_config("generate").cfg_scale}
    for r in generated:
        assert r["samples"] == 4 and 0.0 <= r["named"] <= 1.0 and r["lift"] == r["named"] - r["neutral"]
    table = (tmp_path / "edits_eval.md").read_text()
    assert table.count("\n| smile |") == 2 and table.count("\n| male |") == 2 and table.count("\n| mean |") == 2


def test_edit_lift_is_zero_when_the_caption_is_the_neutral_one(trained_workdir, monkeypatch):
    """The neutral re-draw shares the edit's seed, region and decoder: an edit captioned with the neutral
    caption and no negative is its own control, the same pixels judged and lift 0, at every guidance strength."""
    from gptface_jax.serving import inference

    class Judge:  # keeps what it is shown; any pixel change flips a face's verdict half the time
        def __init__(self):
            self.seen = []

        def predict_all(self, images):
            self.seen.append(images.copy())
            odd = images.reshape(len(images), -1).astype(np.int64).sum(1) % 2 == 1
            return {"attributes": np.repeat(odd[:, None], len(ATTRIBUTES), 1).astype(float)}

    monkeypatch.setattr(edit_eval, "EDITS", {"hat": (("hair",), text_to_face_eval.NEUTRAL, "hat")})
    pretrained = inference.load(trained_workdir)
    test = load_labelled(pretrained.source_dataset(), "test", pretrained.image_size)
    attributes = test["attributes"].copy()
    attributes[:, ATTRIBUTES.index("hat")] = 0  # every face may take the edit
    judge = Judge()
    rows = edit_eval.evaluate(pretrained, judge, test["images"], attributes, guidances=(0.0, 2.0),
                              cfg_scales=(0.0,), faces_per_edit=6)
    assert [r["guidance"] for r in rows] == [0.0, 2.0] and all(r["faces"] == 6 for r in rows)
    assert all(r["lift"] == 0.0 and r["success"] == r["success_neutral"] for r in rows)
    before, *edits = judge.seen  # the unedited faces, then (edit, neutral re-draw) per guidance strength
    assert len(edits) == 4 and not np.array_equal(before, edits[0])  # the region was re-drawn
    for edited, control in zip(edits[::2], edits[1::2]):
        np.testing.assert_array_equal(edited, control)


def test_text_to_face_lift_is_zero_when_the_caption_is_the_neutral_one(trained_workdir, monkeypatch):
    """Every caption's faces share the seed: the same caption twice gives the same faces, lift 0 exactly."""
    from gptface_jax.serving import inference

    class Judge:  # any deterministic function of the pixels will do: here, brightness
        def predict_all(self, images):
            bright = images.reshape(len(images), -1).mean(1)
            return {"attributes": np.repeat((bright > 118)[:, None], len(ATTRIBUTES), 1).astype(float)}

    monkeypatch.setattr(text_to_face_eval, "PROMPTS",
                        {"male": text_to_face_eval.NEUTRAL, "hat": "a person wearing a hat",
                                                       "hair:blond": "a person with blond hair"})
    rows = text_to_face_eval.evaluate(inference.load(trained_workdir), Judge(), guidances=(0.0,), cfg_scales=(0.0, 2.0),
                                      samples=6)
    same = [r for r in rows if r["attribute"] == "male"]
    assert [r["cfg_scale"] for r in same] == [0.0, 2.0]  # at every setting of the switches
    assert all(r["lift"] == 0.0 and r["named"] == r["neutral"] for r in same)
    assert {r["attribute"] for r in rows} == {"male", "hat"}  # no hair-colour head: those prompts are skipped


def test_guidance_settings_cover_both_switches():
    assert guidance_grid((0.0, 2.0), (0.0, 3.0)) == [(0.0, 0.0), (2.0, 0.0), (0.0, 3.0), (2.0, 3.0)]
