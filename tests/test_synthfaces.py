"""SynthFaces: determinism, every attribute visible in pixels, caption rates from the text."""
import numpy as np
import pytest

from data_pipelines.synthfaces.attributes import ATTRIBUTES, EXPRESSIONS, HAIR_COLOURS, rng_for, sample_face
from data_pipelines.synthfaces.captions import CaptionConfig, judge_labels, make_caption, mentioned_facts
from data_pipelines.synthfaces.generate import make_example
from data_pipelines.synthfaces.render import render


def test_same_seed_same_bytes_in_any_order():
    forward = [make_example(7, i, 64) for i in range(6)]
    backward = [make_example(7, i, 64) for i in reversed(range(6))][::-1]
    for a, b in zip(forward, backward):
        assert a["image"] == b["image"]
        assert a["caption"] == b["caption"]
        np.testing.assert_array_equal(a["attributes"], b["attributes"])


def test_different_seeds_differ():
    a = [make_example(0, i, 64) for i in range(8)]
    b = [make_example(1, i, 64) for i in range(8)]
    assert sum(x["image"] != y["image"] for x, y in zip(a, b)) == 8
    assert sum(x["caption"] != y["caption"] for x, y in zip(a, b)) >= 6
    # different indices under one seed are different faces too
    assert len({x["image"] for x in a}) == 8


def _plain(index: int, **overrides):
    """A face with every binary attribute off (so nothing hides what a flip adds)."""
    face = sample_face(11, index)
    face = face.replace(**{a: False for a in ATTRIBUTES})
    return face.replace(**overrides)


def _changed_pixels(a: np.ndarray, b: np.ndarray, level: int = 40) -> int:
    return int((np.abs(a.astype(np.int16) - b.astype(np.int16)).max(-1) > level).sum())


@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_every_attribute_visibly_changes_the_face(attribute):
    # Earrings are the smallest feature: a few dozen pixels at 64 px; the rest change far more.
    for index in range(3):
        base = _plain(index)
        flipped = base.replace(**{attribute: True})
        changed = _changed_pixels(render(base, 64), render(flipped, 64))
        assert changed >= 10, f"{attribute} changed only {changed} pixels of face {index}"


def test_hair_colour_and_expression_are_visible():
    import dataclasses
    base = _plain(0)
    img = render(base, 64)
    for c in range(len(HAIR_COLOURS)):
        if c != base.hair_colour:
            other = render(dataclasses.replace(base, hair_colour=c), 64)
            assert _changed_pixels(img, other, 25) >= 40, HAIR_COLOURS[c]
    neutral = render(dataclasses.replace(base, expression=0), 64)
    for e in range(1, len(EXPRESSIONS)):
        other = render(dataclasses.replace(base, expression=e), 64)
        assert _changed_pixels(neutral, other, 30) >= 10, EXPRESSIONS[e]


def test_same_face_at_64_and_256():
    face = sample_face(0, 4)
    small, large = render(face, 64), render(face, 256)
    assert small.shape == (64, 64, 3) and large.shape == (256, 256, 3)
    import cv2
    down = cv2.resize(large, (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(down.astype(float) - small.astype(float)).mean() < 12
    # and it is not just any face: another identity is much further away
    other = render(sample_face(0, 5), 64)
    assert np.abs(other.astype(float) - small.astype(float)).mean() > 25


def test_scale_pose_and_lighting_vary():
    faces = [sample_face(0, i) for i in range(200)]
    for key in ("scale", "roll", "yaw", "light_angle", "bg_kind", "skin_tone"):
        values = np.array([f.style[key] for f in faces])
        assert values.std() > 0.2, key
    brightness = [render(f, 32).mean() for f in faces[:40]]
    assert np.std(brightness) > 8


def _caption_rates(config: CaptionConfig, n: int = 4000):
    with_true = with_false = noise = 0
    for i in range(n):
        face = sample_face(5, i)
        caption = make_caption(face, rng_for(5, i, 2), config)
        facts = mentioned_facts(caption.text)  # read back from the words, not from bookkeeping
        n_true, n_false = judge_labels(face.attribute_vector(), face.hair_colour, face.expression, facts)
        assert (n_true, n_false) == (len(caption.true_facts), len(caption.false_facts)), caption.text
        with_true += n_true > 0
        with_false += n_false > 0
        noise += not facts
    return with_true / n, with_false / n, noise / n


@pytest.mark.parametrize("noise_rate,false_rate", [(0.15, 0.2), (0.4, 0.5), (0.0, 0.0)])
def test_caption_rates_match_config(noise_rate, false_rate):
    with_true, with_false, noise = _caption_rates(CaptionConfig(noise_rate=noise_rate, false_rate=false_rate))
    assert abs(noise - noise_rate) < 0.03
    assert abs(with_true - (1 - noise_rate)) < 0.03  # every related caption states a true fact
    assert abs(with_false - (1 - noise_rate) * false_rate) < 0.03


def test_captions_vary_and_keep_non_ascii():
    texts = [make_caption(sample_face(0, i), rng_for(0, i, 2)).text for i in range(500)]
    assert len(set(texts)) > 430
    assert any(not t.isascii() for t in texts)


def test_label_correlations_are_plausible():
    faces = [sample_face(1, i) for i in range(3000)]
    beards = [f.attributes["male"] for f in faces if f.attributes["beard"]]
    assert beards and all(beards)
    def rate(key):
        return np.mean([f.attributes[key] for f in faces])
    for a in ATTRIBUTES:
        assert 0.03 < rate(a) < 0.8, a
    assert all(f.attributes["smiling"] for f in faces if EXPRESSIONS[f.expression] == "happy")
