"""The README's main job: the tiny end-to-end run on built-in SynthFaces data.

Stages so far: synthesise the corpus -> contact sheet -> data report -> grain reader -> text
tokenizer -> VQ image tokenizer (a short time budget; the quality run is in docs/experiments.md) ->
pre-tokenized shards -> a short tiny pre-training run (metrics + checkpoint) -> edited faces for
every task (edits/*.png). Each stage reuses its output when the workdir already has it, so a
rerun resumes.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from data_pipelines import preview, text_tokenizer
from data_pipelines.pipeline import ReaderConfig, image_text_dataset
from data_pipelines.shards import ShardError, ShardSource, find_dataset_dir
from data_pipelines.synthfaces import builder
from data_pipelines.synthfaces.stats import split_report
from gptface_jax.runtime import layout


def _stage(name: str) -> None:
    print(f"\n== {name}", flush=True)


def _dataset(workdir: Path, num: int) -> Path:
    root = workdir / "data"
    try:
        path = find_dataset_dir(root)
        print(f"reusing {path}")
        return path
    except ShardError:
        # 500 test faces, not the default 5%: the probe table's noise band is then 0.045, not 0.10
        return Path(builder.build(str(root), num=num, image_size=64, seed=0, num_test=500))


def _reader_throughput(source: ShardSource, batches: int = 20, batch_size: int = 32) -> float:
    it = iter(image_text_dataset(source, ReaderConfig(batch_size=batch_size, seed=0)))
    next(it)  # warm-up: first batch opens the shards
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


def _text_tokenizer(workdir: Path, data_dir: Path, vocab_size: int) -> Path:
    path = workdir / layout.TOKENIZER
    if path.exists():
        print(f"reusing {path}")
    else:
        path.write_bytes(text_tokenizer.train(text_tokenizer.captions_of(str(data_dir)), vocab_size))
    tok = text_tokenizer.TextTokenizer(str(path))
    tok.check_fits(vocab_size)
    print(f"{tok.vocab_size} pieces; e.g. {tok.sp.encode('a young woman with bangs', out_type=str)}")
    return path


VQ_STEPS = 400  # 150-300 s on 2 cores shared with other jobs (demos of 2026-12-01)


def _vq(workdir: Path, data_dir: Path, budget_s: float) -> dict:
    from experiments import vq as vq_experiment
    from gptface_jax.train import vq_train
    vq_dir = workdir / "vq"
    if (vq_dir / layout.VQ_EVAL).exists():
        print(f"reusing {vq_dir}")
        return json.loads((vq_dir / layout.VQ_EVAL).read_text())
    config = vq_experiment.get_config("tiny")
    config.data.dir = str(data_dir)
    config.train.steps = VQ_STEPS
    config.train.warmup_steps = 50
    # Only a cap for a machine far slower than 2 free cores: a cap that bites makes the step count,
    # and every later number of the demo, depend on the machine's load.
    config.train.time_budget_s = budget_s
    config.evals.reconstruction.every = 10**9  # evaluated once, at the end
    return vq_train.train(config, str(vq_dir))


def _pretokenize(workdir: Path, data_dir: Path, tokenizer: Path, max_len: int) -> Path:
    from gptface_jax.train.pretokenize import pretokenize
    root = workdir / "pretokenized"
    try:
        path = find_dataset_dir(root)
        print(f"reusing {path}")
        return path
    except ShardError:
        return Path(pretokenize(str(data_dir), str(tokenizer), str(workdir / "vq"), str(root), max_len=max_len))


def _pretrain(workdir: Path, pre_dir: Path, steps: int) -> dict:
    from experiments import pretrain
    from gptface_jax.train import trainer
    config = pretrain.get_config("tiny")
    config.data.pretokenized = str(pre_dir)
    config.train.steps = steps
    config.train.warmup_steps = min(config.train.warmup_steps, steps // 10)
    config.train.log_every = 25
    return trainer.train(config, str(workdir / "pretrain"))


def _edits(workdir: Path, data_dir: Path) -> dict:
    """One held-out face through every task; PNG grids and pasted photos in <workdir>/edits."""
    import numpy as np

    from data_pipelines.pipeline import decode_jpeg
    from gptface_jax.generate import editing
    from gptface_jax.generate.decode_config import default_config
    from gptface_jax.serving import inference
    pretrained = inference.load(str(workdir / "pretrain"))
    size, grid = pretrained.image_size, pretrained.grid
    face = decode_jpeg(ShardSource(data_dir, "test")[0]["image"])
    photo = editing.Photo.of_crop(face)
    square = np.zeros((size, size), np.uint8)
    square[size // 4: size // 2, size // 4: 3 * size // 4] = 255  # an inpainting mask over the eyes
    tasks = {
        "edit_mouth": (editing.token_mask_for(["mouth"], grid=grid, size=size), "a smiling woman with a big smile"),
        "expression": (editing.token_mask_for(["expression"], grid=grid, size=size), "a man looking surprised"),
        "remove_mask": (editing.token_mask_for(["lower-face"], grid=grid, size=size), "a young woman with closed lips"),
        "inpaint": (editing.token_mask_for([], square, grid=grid, size=size), "a person wearing sunglasses"),
        "generate": (np.ones((grid, grid), bool), "portrait of a young man with black hair"),
    }
    out, scores = workdir / "edits", {}
    for name, (mask, text) in tasks.items():
        config = default_config(name)  # the CLI's defaults (docs/generation.md)
        result = editing.edit(pretrained, photo, mask, text, seeds=(0, 1, 2), guidances=(0.0, 2.0), config=config)
        paths = editing.write_result(result, str(out), name)
        scores[name] = {f"guidance_{g:g}": float(np.mean([v for (s, gg), v in result.itm.items() if gg == g]))
                        for g in (0.0, 2.0)}
        print(f"{name:12s} {text!r}: mean ITM log-odds {scores[name]} -> {paths[0]}")
    return scores


def run(workdir: str, num: int = 2000, vq_budget_s: float = 900.0, pretrain_steps: int = 300) -> int:
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

    from experiments import pretrain
    pretrain_config = pretrain.get_config("tiny")
    _stage("5. text tokenizer (SentencePiece on the captions)")
    tokenizer = _text_tokenizer(workdir, data_dir, pretrain_config.text.vocab_size)

    _stage(f"6. VQ image tokenizer (tiny, {VQ_STEPS} steps, capped at {vq_budget_s:.0f} s)")
    vq_scores = _vq(workdir, data_dir, vq_budget_s)
    print(f"held-out PSNR {vq_scores['eval_psnr']:.2f} dB, codebook usage {vq_scores['eval_code_usage']:.2f}; "
          f"grid: {workdir}/vq/reconstructions.png")

    _stage("7. pre-tokenized shards")
    pre_dir = _pretokenize(workdir, data_dir, tokenizer, pretrain_config.text.max_len)
    print(f"{len(ShardSource(pre_dir, 'train'))} train examples as image codes + text ids in {pre_dir}")

    _stage(f"8. GPTFace pre-training (tiny, {pretrain_steps} steps; the 60-minute quality run: make quality)")
    final = _pretrain(workdir, pre_dir, pretrain_steps)
    print(f"step {final['step']}: text loss {final['text_loss']:.3f}, image loss {final['image_loss']:.3f}, "
          f"held-out ITM accuracy clean {final.get('eval_itm_clean_accuracy', float('nan')):.3f} / "
          f"weak {final.get('eval_itm_weak_accuracy', float('nan')):.3f}; "
          f"checkpoint in {workdir}/pretrain/checkpoints")

    _stage("9. edited faces (held-out SynthFaces; ITM guidance 0 and 2, three seeds)")
    edits = _edits(workdir, data_dir)

    _stage("10. linear probes on frozen features (SynthFaces attributes and expression)")
    from gptface_jax.evals import downstream
    probe = downstream.probe(str(workdir / "pretrain"), str(data_dir), str(workdir))
    print(probe["markdown"].split("\n\n| attribute")[0])
    probe_summary = {row: {k: r.get(k) for k in ("attribute_mean_accuracy", "expression_accuracy")}
                     for row, r in probe["results"].items()}

    metrics = {"data_dir": str(data_dir), "train_records": len(train), "edits": edits, "probe": probe_summary,
               "test_records": len(ShardSource(data_dir, "test")),
               "reader_samples_per_s": round(samples_per_s, 1), "pretokenized_dir": str(pre_dir),
               "vq_eval_psnr": vq_scores["eval_psnr"], "vq_eval_code_usage": vq_scores["eval_code_usage"],
               "pretrain": final, **{
                   k: report[k] for k in ("caption_share_with_true_fact", "caption_share_with_false_fact",
                                          "caption_share_without_facts")}}
    (workdir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(f"\ndemo done: {workdir}/metrics.json, {workdir}/preview.png, {workdir}/data_report.json, "
          f"{workdir}/vq/reconstructions.png, {workdir}/edits/, {workdir}/probe_synth_faces.md")
    return 0
