"""Label names ("male", "not:male", "hair:red", "expression:happy") on judge predictions and on ground truth."""
import numpy as np
import pytest

from data_pipelines.synthfaces.attributes import ATTRIBUTES, EXPRESSIONS, HAIR_COLOURS
from gptface_jax.evals.face_labels import holds, labels_as_predictions


def test_judge_predictions_negations_and_missing_heads():
    predictions = {"attributes": np.array([[0.9] * len(ATTRIBUTES), [0.1] * len(ATTRIBUTES)])}
    np.testing.assert_array_equal(holds(predictions, "male"), [True, False])
    np.testing.assert_array_equal(holds(predictions, "not:male"), [False, True])
    np.testing.assert_array_equal(holds(predictions, "not:not:male"), [True, False])
    assert holds(predictions, "not:hair:red") is None  # no hair-colour head
    assert holds(predictions, "expression:happy") is None  # no expression head
    expression = np.array([[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.6, 0.1]])  # happy, surprised
    np.testing.assert_array_equal(holds({**predictions, "expression": expression}, "expression:surprised"),
                                  [False, True])
    np.testing.assert_array_equal(holds({**predictions, "expression": expression}, "not:expression:surprised"),
                                  [True, False])


def test_ground_truth_reads_like_a_judge_that_is_sure():
    attributes = np.zeros((3, len(ATTRIBUTES)), np.int8)
    attributes[0, ATTRIBUTES.index("hat")] = 1
    attributes[2, ATTRIBUTES.index("hat")] = -1  # unknown
    hair = np.array([HAIR_COLOURS.index("red"), -1, HAIR_COLOURS.index("black")])
    expression = np.array([EXPRESSIONS.index("sad"), EXPRESSIONS.index("happy"), -1])
    truth = labels_as_predictions(attributes, hair, expression)
    np.testing.assert_array_equal(truth["hair_colour"].sum(-1), [1, 0, 1])  # one-hot; unknown is all zero
    np.testing.assert_array_equal(holds(truth, "hat"), [True, False, False])
    np.testing.assert_array_equal(holds(truth, "not:hat"), [False, True, False])  # unknown: neither
    np.testing.assert_array_equal(holds(truth, "hair:red"), [True, False, False])
    np.testing.assert_array_equal(holds(truth, "not:hair:red"), [False, False, True])
    # class 0 of a head is not what an unknown label reads as
    np.testing.assert_array_equal(holds(truth, f"hair:{HAIR_COLOURS[0]}"), [False, False, True])
    np.testing.assert_array_equal(holds(truth, f"not:expression:{EXPRESSIONS[0]}"), [True, True, False])
    # labels nobody knows are left out, like a judge without the head
    assert holds(labels_as_predictions(attributes, np.full(3, -1)), "hair:red") is None
    assert holds(labels_as_predictions(attributes), "expression:sad") is None


def test_unknown_label_names_are_errors():
    predictions = {"attributes": np.zeros((1, len(ATTRIBUTES)))}
    with pytest.raises(ValueError, match="unknown label 'tiara'"):
        holds(predictions, "tiara")
    with pytest.raises(ValueError, match="unknown hair 'purple'"):
        holds(predictions, "hair:purple")
