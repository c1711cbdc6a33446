"""The README's main job: the tiny end-to-end run on built-in SynthFaces data.

Stages: synthesise the corpus -> contact sheet -> data report -> grain reader -> text tokenizer ->
VQ image tokenizer (a short budget; the quality run is in docs/model.md) -> pre-tokenized shards ->
pre-training (`experiments/pretrain.py:demo`: metrics, held-out ITM and retrieval, a checkpoint) ->
text-to-face judged by a pixel classifier -> edited faces for every task (edits/*.png). Each stage
reuses its output when the workdir already has it, so a rerun resumes; each prints its wall time,
and metrics.json keeps them. The probe table is one command more (printed at the end).
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from data_pipelines import preview, text_tokenizer
from data_pipelines.pipeline import ReaderConfig, image_text_dataset
from data_pipelines.shards import ShardError, ShardSource, find_dataset_dir
from data_pipelines.synthfaces import builder
from data_pipelines.synthfaces.stats import split_report
from gptface_jax.runtime import layout


class _Stages:
    """Prints each stage's title, and the previous stage's wall time when the next one starts."""

    def __init__(self):
        self.seconds, self._name, self._start = {}, None, 0.0

    def __call__(self, name: str | None) -> None:
        now = time.perf_counter()
        if self._name is not None:
            self.seconds[self._name] = round(now - self._start, 1)
            print(f"   ({self.seconds[self._name]:.0f} s)", flush=True)
        self._name, self._start = name, now
        if name is not None:
            print(f"\n== {name}", flush=True)


def _dataset(workdir: Path, num: int) -> Path:
    root = workdir / "data"
    try:
        path = find_dataset_dir(root)
        print(f"reusing {path}")
        return path
    except ShardError:
        # 500 test faces, not the default 5%: held-out ITM and retrieval among 500, and a probe table
        # (`gptface eval probe`) with a noise band of 0.045, not 0.10
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


# 250 steps: 110-133 s on 2 cores, 20.7 dB held-out (demo at commit b3f4868); 300 steps gave 21.4 dB in 150 s.
# The minutes go to pre-training.
VQ_STEPS = 250


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


def _pretrain(workdir: Path, pre_dir: Path) -> dict:
    from experiments import pretrain
    from gptface_jax.train import trainer
    config = pretrain.get_config("demo")
    config.data.pretokenized = str(pre_dir)
    # the probe table with its baselines is `gptface eval probe` (about 2 minutes here; the
    # 200-step model's features probe at random init's level, ../BENCHMARKS.md, "The demo")
    config.evals.probe.every = 0
    return trainer.train(config, str(workdir / "pretrain"))


# Judge: a pixel classifier on this many training faces, for this many steps (hair colour, sex,
# glasses and headwear are read well before expression).
JUDGE_FACES, JUDGE_STEPS, TEXT_TO_FACE_SAMPLES = 4000, 400, 24
# The text-to-face sampler's ITC guidance lambda. Over the cd50 models of seeds 0-2, 48 faces per caption
# (run tg1, docs/experiments.md): lambda 2 lifts 2 / 3 / 2 captions by >= 0.15 (mean lift 0.057), lambda 4
# 6 / 4 / 4 (0.080), lambda 6 5 / 5 / 5 (0.121).
TEXT_TO_FACE_GUIDANCE = 6.0


def _text_to_face(workdir: Path, data_dir: Path, pretrained) -> list[dict]:
    """Faces generated from scratch for each named caption and for a neutral one, judged (text_to_face_eval)."""
    from gptface_jax.evals import attribute_classifier, text_to_face_eval
    from gptface_jax.generate.decode_config import default_config
    judge_dir = workdir / "judge"
    if (judge_dir / attribute_classifier.INFO_FILE).exists():
        judge = attribute_classifier.load(str(judge_dir))
    else:
        judge = attribute_classifier.train(str(data_dir), str(judge_dir), steps=JUDGE_STEPS, limit=JUDGE_FACES,
                                           vq=pretrained.vq)
    print(f"judge: held-out attribute accuracy {judge.info['test']['attribute_mean_accuracy']:.3f}")
    # The CLI's text-to-face sampler (classifier-free w = 3), guided by the ITC similarity: on the demo's
    # 200-step model 4 captions lift by >= 0.15 against 1 with ITM guidance, in half the time (lambda 2,
    # 24 faces each, demo at 6d94493, run g1); the ITC loss is what has left its plateau by then.
    sampler = dataclasses.replace(default_config("generate"), guide="itc")
    rows = text_to_face_eval.evaluate(pretrained, judge, guidances=(TEXT_TO_FACE_GUIDANCE,),
                                      cfg_scales=(sampler.cfg_scale,),
                                      samples=TEXT_TO_FACE_SAMPLES, seed=0, config=sampler)
    table = text_to_face_eval.markdown(rows)
    (workdir / "text_to_face.md").write_text(table)
    print(table)
    return rows


def _edits(workdir: Path, data_dir: Path, pretrained) -> dict:
    """The first held-out face through every task, except mask removal, which takes the first held-out
    face wearing a mask; PNG grids and pasted photos in <workdir>/edits."""
    import numpy as np

    from data_pipelines.pipeline import decode_jpeg
    from data_pipelines.synthfaces.attributes import ATTRIBUTES
    from gptface_jax.generate import editing
    from gptface_jax.generate.decode_config import MASK_NEGATIVE, default_config
    size, grid = pretrained.image_size, pretrained.grid
    test = ShardSource(data_dir, "test")
    photo = editing.Photo.of_crop(decode_jpeg(test[0]["image"]))
    wears_mask = ATTRIBUTES.index("surgical_mask")
    masked = next((i for i in range(len(test)) if test[i]["attributes"][wears_mask]), 0)
    masked_photo = editing.Photo.of_crop(decode_jpeg(test[masked]["image"]))
    square = np.zeros((size, size), np.uint8)
    # an inpainting mask over the eyes: SynthFaces draws them at 0.45-0.58 of the height (regions.REGIONS)
    square[7 * size // 16: 5 * size // 8, size // 4: 3 * size // 4] = 255
    tasks = {
        "edit_mouth": (editing.token_mask_for(["mouth"], grid=grid, size=size), "a smiling woman with a big smile"),
        "expression": (editing.token_mask_for(["expression"], grid=grid, size=size), "a man looking surprised"),
        "remove_mask": (editing.token_mask_for(["lower-face"], grid=grid, size=size), "a young woman with closed lips"),
        "inpaint": (editing.token_mask_for([], square, grid=grid, size=size), "a person wearing sunglasses"),
        "generate": (np.ones((grid, grid), bool), "portrait of a young man with black hair"),
    }
    command = {"edit_mouth": "edit", "expression": "edit", "remove_mask": "remove-mask", "inpaint": "inpaint",
               "generate": "generate"}
    # one decoder per decoding config across the tasks (edits, mask removal and inpainting share w = 0):
    # compiling was two thirds of this stage (44 of 66 s, 17 programs; demo at a4978a9)
    out, scores, compiled = workdir / "edits", {}, {}
    for name, (mask, text) in tasks.items():
        config = default_config(command[name])  # the CLI's defaults for that command (docs/generation.md),
        # but w = 0 and one candidate on edits: at the CLI's w = 8 the 200-step model's edited regions look the
        # same (the grids side by side, demo at 1fea272), and each costs time of a full budget (w = 8: 46 s
        # against 39; four candidates decode four times the rows)
        if command[name] in ("edit", "remove-mask"):
            config = dataclasses.replace(config, cfg_scale=0.0, candidates=1)
        removal = name == "remove_mask"  # as `gptface remove-mask` does it: away from the mask
        result = editing.edit(pretrained, masked_photo if removal else photo, mask, text, seeds=(0, 1, 2),
                              guidances=(0.0, 2.0), config=config, cache=compiled,
                              negative=MASK_NEGATIVE if removal else None)
        paths = editing.write_result(result, str(out), name)
        scores[name] = {f"guidance_{g:g}": float(np.mean([v for (s, gg), v in result.itm.items() if gg == g]))
                        for g in (0.0, 2.0)}
        print(f"{name:12s} {text!r}: mean ITM log-odds {scores[name]} -> {paths[0]}")
    return scores


LIFT = 0.15  # a caption "follows" when its faces hold the attribute this much more often than the neutral's


def run(workdir: str, num: int = 16000, vq_budget_s: float = 900.0) -> int:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stage = _Stages()
    stage(f"1. SynthFaces: {num} faces at 64 px")
    data_dir = _dataset(workdir, num)

    stage("2. contact sheet")
    sheet = preview.preview(str(data_dir), str(workdir / "preview.png"), num=32)
    print(f"wrote {sheet}")

    stage("3. data report (caption quality measured from the text)")
    train = ShardSource(data_dir, "train")
    report = split_report(train)
    (workdir / "data_report.json").write_text(json.dumps(report, indent=1))
    for key in ("records", "caption_share_with_true_fact", "caption_share_with_false_fact",
                "caption_share_without_facts", "caption_bookkeeping_mismatches"):
        print(f"{key:32s} {report[key]}")

    stage("4. grain reader")
    samples_per_s = _reader_throughput(train)
    print(f"reader: {samples_per_s:.0f} samples/s (64 px, batch 32, in-process decode)")

    from experiments import pretrain
    pretrain_config = pretrain.get_config("demo")
    stage("5. text tokenizer (SentencePiece on the captions)")
    tokenizer = _text_tokenizer(workdir, data_dir, pretrain_config.text.vocab_size)

    stage(f"6. VQ image tokenizer (tiny, {VQ_STEPS} steps, capped at {vq_budget_s:.0f} s)")
    vq_scores = _vq(workdir, data_dir, vq_budget_s)
    print(f"held-out PSNR {vq_scores['eval_psnr']:.2f} dB, codebook usage {vq_scores['eval_code_usage']:.2f}; "
          f"grid: {workdir}/vq/reconstructions.png")

    stage("7. pre-tokenized shards")
    pre_dir = _pretokenize(workdir, data_dir, tokenizer, pretrain_config.text.max_len)
    print(f"{len(ShardSource(pre_dir, 'train'))} train examples as image codes + text ids in {pre_dir}")

    stage(f"8. GPTFace pre-training (experiments/pretrain.py:demo, {pretrain_config.train.steps} steps of "
          f"{pretrain_config.train.batch_size}; the 60-minute quality run: make quality)")
    final = _pretrain(workdir, pre_dir)
    nan = float("nan")
    print(f"step {final['step']}: text loss {final['text_loss']:.3f}, image loss {final['image_loss']:.3f}, "
          f"ITC loss {final.get('itc_loss', nan):.3f}; checkpoint in {workdir}/pretrain/checkpoints")
    print(f"held-out ITM accuracy clean {final.get('eval_itm_clean_accuracy', nan):.3f} "
          f"(AUC {final.get('eval_itm_clean_auc', nan):.3f}) / weak {final.get('eval_itm_weak_accuracy', nan):.3f}")
    print(f"held-out recall@5 among {final.get('eval_retrieval_faces', 0)} faces: image->text "
          f"{final.get('eval_retrieval_i2t_r5', nan):.3f}, text->image {final.get('eval_retrieval_t2i_r5', nan):.3f} "
          f"(chance {final.get('eval_retrieval_chance_r5', nan):.3f})")

    stage("9. text-to-face (each named caption vs 'a photo of a person', the default sampler with ITC guidance "
          f"{TEXT_TO_FACE_GUIDANCE:g}; judged from pixels)")
    from gptface_jax.serving import inference
    pretrained = inference.load(str(workdir / "pretrain"))
    generated = _text_to_face(workdir, data_dir, pretrained)
    following = [r["attribute"] for r in generated if r["lift"] >= LIFT]
    print(f"{len(following)} of {len(generated)} captions lift their attribute by >= {LIFT}: {', '.join(following)}")

    stage("10. edited faces (held-out SynthFaces; ITM guidance 0 and 2, three seeds)")
    edits = _edits(workdir, data_dir, pretrained)

    stage(None)

    metrics = {"data_dir": str(data_dir), "train_records": len(train), "edits": edits,
               "test_records": len(ShardSource(data_dir, "test")),
               "reader_samples_per_s": round(samples_per_s, 1), "pretokenized_dir": str(pre_dir),
               "vq_eval_psnr": vq_scores["eval_psnr"], "vq_eval_code_usage": vq_scores["eval_code_usage"],
               "pretrain": final, "text_to_face": generated, "text_to_face_following": following,
               "stage_seconds": stage.seconds, **{
                   k: report[k] for k in ("caption_share_with_true_fact", "caption_share_with_false_fact",
                                          "caption_share_without_facts")}}
    (workdir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(f"\ndemo done in {sum(stage.seconds.values()) / 60:.1f} min: {workdir}/metrics.json, {workdir}/preview.png, "
          f"{workdir}/data_report.json, {workdir}/vq/reconstructions.png, {workdir}/text_to_face.md, {workdir}/edits/")
    print(f"linear probes of the frozen features beside random init, pixels and VQ codes: gptface eval probe "
          f"--workdir {workdir}/pretrain --dataset {data_dir} --max-train 1000")
    return 0
