"""Ordered parallel map over local cores, shared by the dataset builders."""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator


def single_threaded_opencv() -> None:
    """Worker initializer: one OpenCV thread per process, so N workers use N cores, not N^2."""
    import cv2
    cv2.setNumThreads(1)


def ordered_map(fn: Callable, items: Iterable, *, workers: int = 0, chunksize: int = 16,
                min_items: int = 0) -> Iterator:
    """fn over items in input order, in `workers` processes (0: one per core; 1: in this process).

    Processes are spawned, not forked: the caller may already hold JAX's or grain's threads.
    `min_items` keeps small known-length inputs in-process, where starting workers costs more.
    """
    workers = workers or os.cpu_count() or 1
    small = min_items and hasattr(items, "__len__") and len(items) < min_items
    if workers <= 1 or small:
        yield from map(fn, items)
        return
    pool = multiprocessing.get_context("spawn").Pool(workers, single_threaded_opencv)
    try:
        yield from pool.imap(fn, items, chunksize=chunksize)
    finally:
        pool.terminate()
