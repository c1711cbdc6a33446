"""Crawled-data ingestion throughput: face-pipeline pairs/s with 1 and 2 worker processes, side by side.

    python bench/ingest.py [--pairs N]

The crawl is built from the real photos that registry packages ship (LFW subset faces upscaled to
250 px like LFW, scikit-image non-faces, the astronaut and Grace Hopper), as a WebDataset tar.
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

from data_pipelines.ingest.builder import ingest  # noqa: E402
from data_pipelines.ingest.process import IngestOptions  # noqa: E402
from data_pipelines.ingest.readers import ReaderOptions  # noqa: E402
from tests import crawl_fixtures as cf  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=600)
    args = parser.parse_args()
    faces, non_faces = cf.lfw_faces_and_non_faces(size=250)
    photos = faces + non_faces + [cf.astronaut(), cf.grace_hopper()] + cf.non_faces()
    members = []
    for i in range(args.pairs):
        members += [(f"{i:06d}.jpg", cf.jpeg(photos[i % len(photos)])), (f"{i:06d}.txt", f"photo {i}".encode())]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.pairs} pairs")
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        tar = cf.write_tar(os.path.join(tmp, "crawl.tar"), members)
        for workers in (1, 2):
            start = time.perf_counter()
            _, report = ingest([tar], os.path.join(tmp, f"out{workers}"), IngestOptions(ReaderOptions("webdataset")),
                               workers=workers)
            rates[workers] = args.pairs / (time.perf_counter() - start)
            print(json.dumps({"workers": workers, "pairs_per_s": round(rates[workers], 1), "kept": report["kept"],
                              "dropped": report["dropped_by_reason"]}), flush=True)
    print(f"2 workers / 1 worker: {rates[2] / rates[1]:.2f}x (build overhead included)")


if __name__ == "__main__":
    main()
