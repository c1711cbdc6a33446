"""Named regions of an aligned face, defined once in image fractions and rasterised onto any token grid.

Boxes are (top, bottom, left, right) as fractions of the aligned crop (SynthFaces and ingestion
both centre the face: eyes near 0.5 of the height, the mouth near 0.7). A token belongs to a region
when its cell's centre lies inside one of the region's boxes; a region too small to contain any
centre gets the one cell nearest to its box's centre, so every region is non-empty at every grid.

Pixel masks map to token masks by coverage: a token is masked when at least `min_coverage` of its
cell's pixels are masked (default 0.25: a small occluder still reaches the tokens it touches,
while a stray pixel does not).
"""
from __future__ import annotations

import numpy as np

# "hair" reaches down to the brows and in to the temples: on 20k SynthFaces training faces the pixels
# whose mean colour differs most between hair colours fill the 8x8 token rows 1-3 over the head (row 3
# holds the hairline and bangs) and the columns beside the face, x 0.19-0.37 and 0.63-0.81; a hat sits
# in the same rows 1-3. Ending the top at 0.36 and the sides at 0.2 left row 3 and the temples showing
# the old colour, which the decoder copied back (run q4: hair edits 0.16 -> 0.63-0.78, docs/experiments.md).
REGIONS: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "hair": ((0.0, 0.45, 0.0, 1.0), (0.45, 0.85, 0.0, 0.3), (0.45, 0.85, 0.7, 1.0)),
    "hairline": ((0.18, 0.36, 0.2, 0.8),),
    "forehead": ((0.3, 0.45, 0.25, 0.75),),
    "eyebrows": ((0.4, 0.5, 0.2, 0.8),),
    "eyes": ((0.45, 0.58, 0.2, 0.8),),
    "nose": ((0.5, 0.68, 0.38, 0.62),),
    "mouth": ((0.62, 0.8, 0.3, 0.7),),
    "chin": ((0.78, 0.95, 0.3, 0.7),),
    "lower-face": ((0.55, 0.95, 0.2, 0.8),),
    "upper-face": ((0.3, 0.6, 0.15, 0.85),),
    "expression": ((0.4, 0.8, 0.2, 0.8),),          # brows + eyes + mouth
    "face": ((0.2, 0.95, 0.15, 0.85),),
    "background": ((0.0, 1.0, 0.0, 0.12), (0.0, 1.0, 0.88, 1.0)),
}


class RegionError(ValueError):
    """An unknown region name or a mask that does not fit the image."""


def region_names() -> list[str]:
    return sorted(REGIONS)


def region_mask(name: str, grid: int) -> np.ndarray:
    """(grid, grid) bool: the tokens of region `name`."""
    if name not in REGIONS:
        raise RegionError(f"unknown region {name!r}; known regions: {', '.join(region_names())}")
    centres = (np.arange(grid) + 0.5) / grid
    mask = np.zeros((grid, grid), bool)
    for top, bottom, left, right in REGIONS[name]:
        rows = (centres >= top) & (centres < bottom)
        cols = (centres >= left) & (centres < right)
        box = rows[:, None] & cols[None, :]
        if not box.any():
            r = min(int((top + bottom) / 2 * grid), grid - 1)
            c = min(int((left + right) / 2 * grid), grid - 1)
            box[r, c] = True
        mask |= box
    return mask


def union(names, grid: int) -> np.ndarray:
    mask = np.zeros((grid, grid), bool)
    for name in names:
        mask |= region_mask(name, grid)
    return mask


def pixel_to_token_mask(pixels: np.ndarray, grid: int, min_coverage: float = 0.25) -> np.ndarray:
    """(H, W) pixel mask (bool, or uint8 where > 127 is masked) -> (grid, grid) token mask."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 3:
        pixels = pixels.max(-1)
    if pixels.ndim != 2:
        raise RegionError(f"a mask must be a 2-D image, got shape {pixels.shape}")
    h, w = pixels.shape
    if h % grid or w % grid:
        raise RegionError(f"a {h}x{w} mask does not divide into a {grid}x{grid} token grid")
    masked = pixels > 127 if pixels.dtype != bool else pixels
    coverage = masked.reshape(grid, h // grid, grid, w // grid).mean(axis=(1, 3))
    return coverage >= min_coverage
