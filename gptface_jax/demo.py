"""The README's main job: the tiny end-to-end run on built-in SynthFaces data.

Stages so far: synthesise the corpus -> contact sheet -> data report -> read it through the
grain pipeline. Each stage reuses its output when the workdir already has it, so a rerun resumes.
Tokenizers, pre-training and editing join as their issues land.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from data_pipelines import preview
from data_pipelines.pipeline import ReaderConfig, image_text_dataset
from data_pipelines.shards import ShardError, ShardSource, find_dataset_dir
from data_pipelines.synthfaces import builder
from data_pipelines.synthfaces.stats import split_report


def _stage(name: str) -> None:
    print(f"\n== {name}", flush=True)


def _dataset(workdir: Path, num: int) -> Path:
    root = workdir / "data"
    try:
        path = find_dataset_dir(root)
        print(f"reusing {path}")
        return path
    except ShardError:
        return Path(builder.build(str(root), num=num, image_size=64, seed=0))


def _reader_throughput(source: ShardSource, batches: int = 20, batch_size: int = 32) -> float:
    it = iter(image_text_dataset(source, ReaderConfig(batch_size=batch_size, seed=0)))
    next(it)  # warm-up: first batch opens the shards
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


def run(workdir: str, num: int = 2000) -> int:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _stage(f"1. SynthFaces: {num} faces at 64 px")
    data_dir = _dataset(workdir, num)

    _stage("2. contact sheet")
    sheet = preview.preview(str(data_dir), str(workdir / "preview.png"), num=32)
    print(f"wrote {sheet}")

    _stage("3. data report (caption quality measured from the text)")
    train = ShardSource(data_dir, "train")
    report = split_report(train)
    (workdir / "data_report.json").write_text(json.dumps(report, indent=1))
    for key in ("records", "caption_share_with_true_fact", "caption_share_with_false_fact",
                "caption_share_without_facts", "caption_bookkeeping_mismatches"):
        print(f"{key:32s} {report[key]}")

    _stage("4. grain reader")
    samples_per_s = _reader_throughput(train)
    print(f"reader: {samples_per_s:.0f} samples/s (64 px, batch 32, in-process decode)")

    metrics = {"data_dir": str(data_dir), "train_records": len(train),
               "test_records": len(ShardSource(data_dir, "test")),
               "reader_samples_per_s": round(samples_per_s, 1), **{
                   k: report[k] for k in ("caption_share_with_true_fact", "caption_share_with_false_fact",
                                          "caption_share_without_facts")}}
    (workdir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(f"\ndemo done: {workdir}/metrics.json, {workdir}/preview.png, {workdir}/data_report.json")
    return 0
