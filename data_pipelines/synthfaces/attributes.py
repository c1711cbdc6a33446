"""SynthFaces labels: the attribute vocabulary and how a face's labels and style are drawn.

A face is (labels, style). Labels are what captions talk about and evaluations score. Style is a
fixed-length vector of uniforms that the renderer maps to geometry, colours, pose and lighting; it
is drawn independently of the labels, so flipping one label and re-rendering changes only what
that label controls (the tests rely on this).
"""
from __future__ import annotations

import dataclasses

import numpy as np

# Order is part of the on-disk schema: the `attributes` vector follows it.
ATTRIBUTES = (
    "male", "young", "smiling", "mouth_open", "eyes_closed", "eyeglasses", "sunglasses",
    "beard", "moustache", "bald", "bangs", "wavy_hair", "hat", "surgical_mask", "earrings",
    "heavy_makeup",
)
HAIR_COLOURS = ("black", "brown", "blond", "red", "grey")
EXPRESSIONS = ("neutral", "happy", "sad", "surprised", "angry")

# Every continuous choice the renderer makes, each drawn U(0, 1). Appending keys is safe;
# reordering changes every rendered face.
STYLE_KEYS = (
    "skin_tone", "skin_jitter", "centre_x", "centre_y", "scale", "aspect", "roll", "yaw", "jaw",
    "hair_length", "hair_wave_phase", "hair_wave_freq", "hair_shade", "hair_volume", "bg_kind",
    "bg_hue_a", "bg_hue_b", "bg_angle", "bg_freq", "shirt_hue", "shirt_value", "eye_colour",
    "lip_tone", "hat_kind", "hat_hue", "mask_colour", "glasses_shape", "glasses_colour",
    "earring_kind", "earring_colour", "makeup_hue", "light_angle", "light_strength", "brightness",
    "contrast", "noise", "blur", "bald_side_hair", "brow_shape", "nose_len", "mouth_width",
    "eye_spacing", "colour_cast", "hat_hue_b", "beard_density",
)


@dataclasses.dataclass(frozen=True)
class Face:
    """One SynthFaces identity: labels plus the style vector the renderer reads."""

    attributes: dict[str, bool]
    hair_colour: int
    expression: int
    style: dict[str, float]

    def attribute_vector(self) -> np.ndarray:
        return np.array([int(self.attributes[a]) for a in ATTRIBUTES], np.int8)

    def replace(self, **attributes: bool) -> Face:
        unknown = set(attributes) - set(ATTRIBUTES)
        if unknown:
            raise KeyError(f"unknown SynthFaces attribute(s) {sorted(unknown)}; known: {ATTRIBUTES}")
        return dataclasses.replace(self, attributes={**self.attributes, **attributes})


def rng_for(seed: int, index: int, stream: int) -> np.random.Generator:
    """Independent, order-free random stream per (seed, example index, purpose)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), int(stream)]))


def sample_face(seed: int, index: int) -> Face:
    """Draws a face's labels with plausible correlations (beards on men, grey hair with age, ...)."""
    r = rng_for(seed, index, 0)
    u = r.random(24)  # fixed consumption keeps every later draw stable
    male = u[0] < 0.5
    young = u[1] < 0.6
    expression = int(np.searchsorted(np.cumsum([0.3, 0.25, 0.15, 0.15, 0.15]), u[2] * 0.99999))
    name = EXPRESSIONS[expression]
    smiling = name == "happy" or (name == "neutral" and u[3] < 0.25)
    p_open = {"neutral": 0.1, "happy": 0.5, "sad": 0.1, "surprised": 1.0, "angry": 0.35}[name]
    mouth_open = u[4] < p_open
    sunglasses = u[5] < 0.12
    eyeglasses = not sunglasses and u[6] < 0.28
    eyes_closed = not sunglasses and name != "surprised" and u[7] < 0.12
    beard = male and u[8] < 0.35
    moustache = male and u[9] < (0.7 if beard else 0.2)
    hat = u[10] < 0.15
    bald = (not hat) and male and u[11] < (0.1 if young else 0.45)
    bangs = not bald and u[12] < (0.35 if not male else 0.15)
    wavy_hair = not bald and u[13] < 0.35
    surgical_mask = u[14] < 0.12
    earrings = u[15] < (0.08 if male else 0.45)
    heavy_makeup = (not male) and u[16] < 0.4
    hair_p = [0.3, 0.3, 0.2, 0.12, 0.08] if young else [0.15, 0.15, 0.1, 0.05, 0.55]
    hair_colour = int(np.searchsorted(np.cumsum(hair_p), u[17] * 0.99999))
    attributes = dict(
        male=male, young=young, smiling=smiling, mouth_open=mouth_open, eyes_closed=eyes_closed,
        eyeglasses=eyeglasses, sunglasses=sunglasses, beard=beard, moustache=moustache, bald=bald,
        bangs=bangs, wavy_hair=wavy_hair, hat=hat, surgical_mask=surgical_mask, earrings=earrings,
        heavy_makeup=heavy_makeup)
    style_values = rng_for(seed, index, 1).random(len(STYLE_KEYS))
    style = {k: float(v) for k, v in zip(STYLE_KEYS, style_values)}
    return Face({k: bool(v) for k, v in attributes.items()}, hair_colour, expression, style)
