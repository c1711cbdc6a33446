"""Decoding settings: what `decoding` runs and what the CLI offers, kept free of jax.

The CLI builds its parser (and `--help`) from these defaults without importing jax; `decoding`
runs them. One place says which task samples with classifier-free guidance by default.
"""
from __future__ import annotations

import dataclasses

GUIDES = ("itm", "itc", "both")
ORDERS = ("confidence", "left_to_right")


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
    steps: int = 12                  # T
    temperature: float = 1.0         # sampling temperature
    confidence_noise: float = 4.5    # Gumbel scale on the confidence at step 0, annealed to 0
    guidance: float = 0.0            # lambda: ITM-gradient guidance strength (0: off)
    guidance_steps: int = 1          # K refinement steps per decoding step
    guidance_tau: float = 1.0        # softmax temperature of the expected-embedding relaxation
    cfg_scale: float = 0.0           # classifier-free guidance w (0: off)
    # ITM guidance on score(control, x) - score(blank control, x): what the control signal adds to
    # how match-like x looks whatever the caption (off: the plain match log-odds)
    guidance_contrast: bool = False
    # what the guidance gradient follows: "itm" (the fused match log-odds), "itc" (the unimodal
    # embeddings' similarity; needs ITC heads) or "both" (the two normalised gradients added)
    guide: str = "itm"
    # which masked positions are kept each step: "confidence" (MaskGIT: the most confident, on a
    # cosine schedule) or "left_to_right" (the leftmost, an equal share per step: one token per
    # step when steps == positions, as an autoregressive captioner writes)
    order: str = "confidence"
    # text only: subtracted from the logit of every token the text already holds (0: off), so a
    # caption does not say "with with" (the repetition penalty of Keskar et al. 2019, additive)
    repeat_penalty: float = 0.0
    # draw this many samples per example and keep the one the model's own match log-odds (ITM)
    # rank first: reranking, as DALL-E ranks its samples by CLIP and BLIP's CapFilt filters by ITM
    candidates: int = 1

    def validate(self) -> None:
        if self.steps < 1 or self.guidance_steps < 1 or self.candidates < 1:
            raise ValueError(f"steps={self.steps}, guidance_steps={self.guidance_steps} and "
                             f"candidates={self.candidates} must be >= 1")
        if self.temperature <= 0 or self.guidance_tau <= 0:
            raise ValueError("temperature and guidance_tau must be > 0")
        if min(self.guidance, self.cfg_scale, self.confidence_noise, self.repeat_penalty) < 0:
            raise ValueError("guidance, cfg_scale, confidence_noise and repeat_penalty must be >= 0")
        if self.guide not in GUIDES:
            raise ValueError(f"guide={self.guide!r} must be one of {GUIDES}")
        if self.order not in ORDERS:
            raise ValueError(f"order={self.order!r} must be one of {ORDERS}")


# Per-task defaults; every other field keeps the dataclass default.
# - generate: text-to-face follows its caption far more with w = 3 (docs/experiments.md, both
#   guidance switches on run a4).
# - edit, remove-mask: w = 8. On run q6's model (64 held-out faces per edit type, ITM guidance 2) mean edit
#   success by w: 0 0.358, 1 0.393, 3 0.449, 5 0.477, 8 0.498, 12 0.506 (docs/experiments.md, run w1).
#   It once drew masks back for "a person without a mask"; mask removal now says "a photo of a person"
#   and steers away from MASK_NEGATIVE (0.969 at w = 8). Inpainting (not measured) and captioning keep w = 0.
#   Edits keep the best of 4 candidates by ITM: on run q10's model (the judge of run q16iw) 0.503 against 0.483
#   for one draw on 256 faces per type, 0.527 against 0.496 on 64, unguided 0.504 against 0.436; the hat and
#   the beard gain (docs/experiments.md, runs rk1 and rk2). Mask removal already removes every mask with one.
# - caption: one token per step left to right at temperature 0.5, no token twice, ITM guidance 3, the best
#   of 4 candidates by ITM.
#   MaskGIT order at temperature 1 wrote word salad ("posing posing"): on run q3's model 46% of
#   stated facts true, 22.5% of captions with a repeat; this sampler 74-78%, none (BENCHMARKS.md,
#   "Face-to-text sampler"). Four candidates, the best matched kept: on run q6's model (1,000 held-out
#   faces) 77.1% -> 81.1% of captions state a fact and 75.3% -> 78.2% of those facts are true
#   (docs/experiments.md, run r1).
TASK_DEFAULTS = {
    "generate": {"cfg_scale": 3.0},
    "edit": {"cfg_scale": 8.0, "candidates": 4},
    "remove-mask": {"cfg_scale": 8.0},
    "caption": {"order": "left_to_right", "temperature": 0.5, "repeat_penalty": 10.0, "guidance": 3.0,
                "candidates": 4},
}


# What mask removal steers away from (decoding's negative control). Its own caption says what the
# lower face should show: a caption that negates ("a person without a mask") is read by the words it
# holds and draws masks back (run q6 at step 800, 64 faces: 0.22 of masks removed with guidance,
# 0.55 with this negative, 1.00 with it and "a photo of a person"; docs/experiments.md, run n1).
MASK_NEGATIVE = "a person wearing a face mask"


def default_config(task: str) -> DecodeConfig:
    return DecodeConfig(**TASK_DEFAULTS.get(task, {}))


# The guidance strengths a command tries by default: its own lambda where it has one, else a plain
# and a guided result side by side.
GUIDANCE_SWEEP = (0.0, 2.0)


def default_guidances(task: str) -> list[float]:
    return [default_config(task).guidance] if "guidance" in TASK_DEFAULTS.get(task, {}) else list(GUIDANCE_SWEEP)


def guidance_grid(guidances, cfg_scales) -> list[tuple[float, float]]:
    """Every (ITM guidance lambda, classifier-free scale w) pair, the two composable switches."""
    return [(float(g), float(w)) for w in cfg_scales for g in guidances]
