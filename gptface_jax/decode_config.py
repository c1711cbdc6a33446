"""Decoding settings: what `decoding` runs and what the CLI offers, kept free of jax.

The CLI builds its parser (and `--help`) from these defaults without importing jax; `decoding`
runs them. One place says which task samples with classifier-free guidance by default.
"""
from __future__ import annotations

import dataclasses


GUIDES = ("itm", "itc", "both")


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

    def validate(self) -> None:
        if self.steps < 1 or self.guidance_steps < 1:
            raise ValueError(f"steps={self.steps} and guidance_steps={self.guidance_steps} must be >= 1")
        if self.temperature <= 0 or self.guidance_tau <= 0:
            raise ValueError("temperature and guidance_tau must be > 0")
        if self.guidance < 0 or self.cfg_scale < 0 or self.confidence_noise < 0:
            raise ValueError("guidance, cfg_scale and confidence_noise must be >= 0")
        if self.guide not in GUIDES:
            raise ValueError(f"guide={self.guide!r} must be one of {GUIDES}")


# Text-to-face follows its caption far more with w = 3 (BENCHMARKS.md, session 8). Edits, inpainting,
# mask removal and captioning keep w = 0: it pushes along every caption word, "without a mask" included.
CFG_SCALE_BY_TASK = {"generate": 3.0}


def default_cfg_scale(task: str) -> float:
    return CFG_SCALE_BY_TASK.get(task, DecodeConfig.cfg_scale)


def guidance_grid(guidances, cfg_scales) -> list[tuple[float, float]]:
    """Every (ITM guidance lambda, classifier-free scale w) pair, the two composable switches."""
    return [(float(g), float(w)) for w in cfg_scales for g in guidances]
