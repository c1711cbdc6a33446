"""Span masking for MILM pre-training, vectorised over the batch in numpy.

Three masking modes, drawn per example (DESIGN.md section 2):
  joint             text at `text_ratio`, image at `image_ratio` (both modalities partly hidden)
  image_generation  image ratio from the MaskGIT cosine schedule, up to 100%; text intact
  text_generation   text ratio from the cosine schedule, up to 100%; image intact

Text masks are SpanBERT spans: lengths ~ Geometric(span_p) clipped to max_span, placed until the
example's budget is met. Image masks are BEiT-style blocks on the token grid: rectangles of random
area and aspect ratio until the budget is met, so hidden regions look like face parts. Masked text
positions are replaced 80/10/10 ([MASK] / random id / kept) by default.

Every draw comes from one generator seeded by (seed, step, shard): a batch's masks are a pure
function of those numbers, so a resumed run re-creates them exactly. Loops run over spans or
blocks (a few dozen), never over examples.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from data_pipelines.errors import OptionError

MODES = ("joint", "image_generation", "text_generation")
JOINT, IMAGE_GENERATION, TEXT_GENERATION = range(3)


@dataclasses.dataclass(frozen=True)
class MaskingConfig:
    mode_probs: tuple[float, float, float] = (0.5, 0.3, 0.2)
    text_ratio: float = 0.2
    image_ratio: float = 0.4
    span_p: float = 0.2
    max_span: int = 10
    replace_probs: tuple[float, float, float] = (0.8, 0.1, 0.1)  # [MASK] / random / keep
    # Floor on the generation modes' cosine ratio: 1.0 masks the whole generated modality, so only the
    # other modality can lower the loss (a cross-modal warm-up; 0 keeps MaskGIT's schedule).
    generation_min_ratio: float = 0.0
    min_block: int = 2            # smallest block side, in tokens (clipped to the grid)
    max_aspect: float = 3.0

    def validate(self) -> None:
        problems = []
        for name in ("mode_probs", "replace_probs"):
            p = np.asarray(getattr(self, name), float)
            if p.shape != (3,) or (p < 0).any() or abs(p.sum() - 1) > 1e-6:
                problems.append(f"{name}={getattr(self, name)} must be 3 non-negative numbers summing to 1")
        for name in ("text_ratio", "image_ratio"):
            if not 0 < getattr(self, name) <= 1:
                problems.append(f"{name}={getattr(self, name)} must be in (0, 1]")
        if not 0 <= self.generation_min_ratio <= 1:
            problems.append(f"generation_min_ratio={self.generation_min_ratio} must be in [0, 1]")
        if not 0 < self.span_p < 1 or self.max_span < 1:
            problems.append(f"span_p={self.span_p} must be in (0, 1) and max_span={self.max_span} >= 1")
        if problems:
            raise OptionError("bad masking config: " + "; ".join(problems))


def cosine_ratio(u: np.ndarray) -> np.ndarray:
    """MaskGIT's schedule: u ~ U(0, 1) -> mask ratio cos(pi/2 * u), in (0, 1], biased to high ratios."""
    return np.cos(0.5 * math.pi * np.asarray(u, np.float64))


def budget(ratio: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Positions to mask: ceil(ratio * n), at least 1 where n > 0, never more than n."""
    n = np.asarray(n)
    return np.minimum(np.maximum(np.ceil(np.asarray(ratio) * n - 1e-9), (n > 0).astype(float)), n).astype(np.int64)


def text_span_mask(lengths: np.ndarray, ratio: np.ndarray, max_len: int, rng: np.random.Generator,
                   span_p: float = 0.2, max_span: int = 10) -> np.ndarray:
    """(B, max_len) bool: spans over each example's first `lengths[b]` positions, exactly its budget."""
    lengths = np.minimum(np.asarray(lengths), max_len)
    b = len(lengths)
    target = budget(ratio, lengths)
    mask = np.zeros((b, max_len), bool)
    positions = np.arange(max_len)
    for _ in range(2 * max_span + 8):  # each round places at most one span per example under budget
        need = target - mask.sum(1)
        active = need > 0
        if not active.any():
            break
        span = np.minimum(np.minimum(rng.geometric(span_p, b), max_span), np.maximum(need, 1))
        start = np.floor(rng.random(b) * np.maximum(lengths - span + 1, 1)).astype(np.int64)
        new = (positions >= start[:, None]) & (positions < (start + span)[:, None]) & active[:, None]
        mask |= new
    # Spans can overlap, so a few examples may still be short: top up with random free positions.
    short = target - mask.sum(1)
    if (short > 0).any():
        mask = _top_up(mask, short, positions < lengths[:, None], rng)
    return mask


def _top_up(mask: np.ndarray, short: np.ndarray, eligible: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Adds `short[b]` random eligible cells to each row of a flat (B, N) mask."""
    keys = np.where(eligible & ~mask, rng.random(mask.shape), np.inf)
    order = np.sort(keys, axis=1)
    threshold = order[np.arange(len(mask)), np.clip(short - 1, 0, mask.shape[1] - 1)]
    return mask | ((keys <= threshold[:, None]) & (short > 0)[:, None])


def image_block_mask(ratio: np.ndarray, grid: int, rng: np.random.Generator, min_block: int = 2,
                     max_aspect: float = 3.0, max_rounds: int = 24) -> np.ndarray:
    """(B, grid, grid) bool: rectangles of random area and aspect until each example's budget.

    Rounds touch only the examples still under budget; after `max_rounds` (high ratios, where the
    last free cells are rarely hit by a random block) the remainder is filled with random cells.
    """
    b = len(ratio)
    n = grid * grid
    target = budget(ratio, np.full(b, n))
    mask = np.zeros((b, grid, grid), bool)
    rows, cols = np.arange(grid)[None, :, None], np.arange(grid)[None, None, :]
    min_block = min(min_block, grid)
    for _ in range(max_rounds):
        need_all = target - mask.reshape(b, -1).sum(1)
        idx = np.flatnonzero(need_all > 0)
        if not len(idx):
            break
        need, k = need_all[idx], len(idx)
        area = rng.uniform(min_block ** 2, np.maximum(need, min_block ** 2) + 1e-9)
        aspect = np.exp(rng.uniform(-math.log(max_aspect), math.log(max_aspect), k))
        h = np.clip(np.round(np.sqrt(area * aspect)), 1, grid).astype(np.int64)
        w = np.clip(np.round(np.sqrt(area / aspect)), 1, grid).astype(np.int64)
        top = np.floor(rng.random(k) * (grid - h + 1)).astype(np.int64)
        left = np.floor(rng.random(k) * (grid - w + 1)).astype(np.int64)
        block = ((rows >= top[:, None, None]) & (rows < (top + h)[:, None, None])
                 & (cols >= left[:, None, None]) & (cols < (left + w)[:, None, None]))
        # A block may not push an example past its budget: keep only its first `need` new cells.
        new = block & ~mask[idx]
        rank = np.cumsum(new.reshape(k, -1), axis=1).reshape(k, grid, grid)
        mask[idx] |= new & (rank <= need[:, None, None])
    short = target - mask.reshape(b, -1).sum(1)
    if (short > 0).any():
        mask = _top_up(mask.reshape(b, -1), short, np.ones((b, n), bool), rng).reshape(b, grid, grid)
    return mask


def mask_batch(text_ids: np.ndarray, text_lengths: np.ndarray, grid: int, config: MaskingConfig, *,
               seed: int, step: int, shard: int = 0, vocab_size: int, mask_id: int, num_special: int) -> dict:
    """Masks for one batch: modes, text/image masks and the corrupted text inputs.

    Returns int8 `mode` (B,), bool `text_mask` (B, L) and `image_mask` (B, grid*grid) and int32
    `text_inputs` (text ids after 80/10/10 replacement at masked positions).
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(step), int(shard), 0x6d61736b]))
    b, max_len = text_ids.shape
    mode = rng.choice(3, size=b, p=np.asarray(config.mode_probs, float)).astype(np.int8)
    schedule = np.maximum(cosine_ratio(rng.random(b)), config.generation_min_ratio)
    text_ratio = np.where(mode == TEXT_GENERATION, schedule, config.text_ratio)
    image_ratio = np.where(mode == IMAGE_GENERATION, schedule, config.image_ratio)
    text_mask = text_span_mask(text_lengths, text_ratio, max_len, rng, config.span_p, config.max_span)
    text_mask &= (mode != IMAGE_GENERATION)[:, None]
    image_mask = image_block_mask(image_ratio, grid, rng, config.min_block, config.max_aspect).reshape(b, -1)
    image_mask &= (mode != TEXT_GENERATION)[:, None]
    # 80/10/10 on masked text positions (the loss still scores every masked position).
    choice = rng.choice(3, size=text_ids.shape, p=np.asarray(config.replace_probs, float))
    random_ids = rng.integers(num_special, vocab_size, size=text_ids.shape)
    inputs = np.where(text_mask & (choice == 0), mask_id, text_ids)
    inputs = np.where(text_mask & (choice == 1), random_ids, inputs)
    return {"mode": mode, "text_mask": text_mask, "image_mask": image_mask, "text_inputs": inputs.astype(np.int32)}
