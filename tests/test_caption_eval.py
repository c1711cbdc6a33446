"""Face-to-text judged by the phrase banks: stated facts against the face's labels."""
import numpy as np
import pytest

from data_pipelines.synthfaces.attributes import ATTRIBUTES
from gptface_jax.evals import caption_eval


def _split(males, hats=None):
    attributes = np.zeros((len(males), len(ATTRIBUTES)), np.int8)
    attributes[:, ATTRIBUTES.index("male")] = males
    if hats is not None:
        attributes[:, ATTRIBUTES.index("hat")] = hats
    return {"attributes": attributes, "hair_colour": np.zeros(len(males), int), "expression": np.zeros(len(males), int)}


def test_stated_facts_are_judged_against_each_faces_labels():
    captions = ["a photo of a man", "a photo of a man", "a man man with black hair", "photo with with a"]
    report = caption_eval.judge(captions, _split([1, 0, 1, 0]))
    # facts: man (true), man (false), man + black hair (both true), none
    assert report["facts_true_share"] == pytest.approx(3 / 4)
    assert report["stating_share"] == pytest.approx(3 / 4)
    assert report["repeat_share"] == pytest.approx(2 / 4)
    assert report["facts_per_caption"] == pytest.approx(4 / 4)
    assert [e["false_facts"] for e in report["examples"]] == [0, 1, 0, 0]


def test_hair_colour_is_no_fact_on_a_hatted_face():
    report = caption_eval.judge(["a man with red hair"], _split([1], hats=[1]))
    assert report["facts_true_share"] == 1.0 and report["facts_per_caption"] == 1.0
