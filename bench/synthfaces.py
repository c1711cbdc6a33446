"""SynthFaces throughput: generator images/s and grain reader samples/s, 64 and 256 px, side by side.

    python bench/synthfaces.py [--quick]

Every figure comes from this one run on this machine, so the ratios (reader vs generator, 256 vs
64 px, worker processes vs in-process decode) compare like with like.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data_pipelines.pipeline import ReaderConfig, image_text_dataset  # noqa: E402
from data_pipelines.shards import ShardSource  # noqa: E402
from data_pipelines.synthfaces import builder  # noqa: E402
from data_pipelines.synthfaces.generate import make_example  # noqa: E402


def generator_rate(size: int, n: int) -> float:
    make_example(0, 0, size)  # warm caches (grids, fonts)
    start = time.perf_counter()
    for i in range(n):
        make_example(0, i, size)
    return n / (time.perf_counter() - start)


def reader_rate(source: ShardSource, workers: int, batches: int, batch_size: int = 32) -> float:
    it = iter(image_text_dataset(source, ReaderConfig(batch_size=batch_size, seed=0, worker_count=workers)))
    next(it)  # workers started, shards open
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batches * batch_size / (time.perf_counter() - start)
    if hasattr(it, "close"):
        it.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    args = parser.parse_args()
    scale = 0.25 if args.quick else 1.0
    cores = os.cpu_count() or 1
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores, python {platform.python_version()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, n_gen, n_data in ((64, int(800 * scale), 1024), (256, int(200 * scale), 512)):
            gen = generator_rate(size, max(n_gen, 20))
            data = builder.build(os.path.join(tmp, str(size)), num=n_data, num_test=0, image_size=size,
                                 workers=1, num_shards=4)
            source = ShardSource(data, "train")
            batches = max(5, int((60 if size == 64 else 20) * scale))
            inproc = reader_rate(source, 0, batches)
            mp = reader_rate(source, min(2, cores), batches)
            rows.append(dict(image_size=size, generator_images_per_s=round(gen, 1),
                             reader_samples_per_s=round(inproc, 1), reader_mp2_samples_per_s=round(mp, 1),
                             reader_over_generator=round(inproc / gen, 1), mp2_over_inprocess=round(mp / inproc, 2)))
            print(json.dumps(rows[-1]), flush=True)
    print(f"256 px vs 64 px: generator {rows[1]['generator_images_per_s'] / rows[0]['generator_images_per_s']:.2f}x, "
          f"reader {rows[1]['reader_samples_per_s'] / rows[0]['reader_samples_per_s']:.2f}x")


if __name__ == "__main__":
    main()
