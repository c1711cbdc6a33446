"""Perceptual-hash de-duplication: 64-bit DCT pHash, near duplicates by Hamming distance.

The index splits each hash into threshold + 1 bands: two hashes within the threshold share at least
one band exactly (pigeonhole), so lookups touch only hashes in the same buckets.
"""
from __future__ import annotations

import cv2
import numpy as np

from data_pipelines.errors import OptionError


def phash(rgb: np.ndarray) -> int:
    """64-bit perceptual hash: low-frequency DCT of a 32x32 grey image against its median."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])  # the DC term would dominate the median
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class NearDuplicateIndex:
    """Remembers kept hashes; `seen(h)` says whether one within `threshold` bits was kept."""

    def __init__(self, threshold: int = 4):
        if not 0 <= threshold < 32:
            raise OptionError(f"dedup threshold must be in [0, 32), got {threshold}")
        self.threshold = threshold
        edges = np.linspace(0, 64, threshold + 2).astype(int)
        self._bands = [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]
        self._buckets: list[dict[int, list[int]]] = [{} for _ in self._bands]

    def _keys(self, h: int):
        for i, (lo, hi) in enumerate(self._bands):
            yield i, (h >> lo) & ((1 << (hi - lo)) - 1)

    def seen(self, h: int) -> bool:
        for i, key in self._keys(h):
            if any(hamming(h, other) <= self.threshold for other in self._buckets[i].get(key, ())):
                return True
        return False

    def add(self, h: int) -> None:
        for i, key in self._keys(h):
            self._buckets[i].setdefault(key, []).append(h)

    def check_and_add(self, h: int) -> bool:
        """True if `h` is a near duplicate (and then it is not added)."""
        if self.seen(h):
            return True
        self.add(h)
        return False
