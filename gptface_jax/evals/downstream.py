"""`gptface eval probe`: linear probes of a pre-trained GPTFace on a labelled face dataset, with baselines.

Any dataset in the shared record schema works: SynthFaces (`gptface data synth`), or CelebA, LFWA,
RAF-DB and AffectNet written by `gptface data benchmark`. Splits: 'train' fits the probes, the
'validation' split (or, where the dataset has none, the last `VALIDATION_FRACTION` of 'train')
chooses the weight decay, 'test' is scored once. Images are the dataset's face crops resized to
the model's input size (area filter), tokenised by the checkpoint's own VQ tokenizer.

Rows of the table: the checkpoint's [CLS] and mean-pooled image features; the same model shape
at its initialisation (what pre-training bought); raw pixels downsampled to 16x16 RGB; the
quantised VQ code vectors at every position (what the image tokens carry before any transformer).
"""
from __future__ import annotations

import json
import os

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.errors import DataError
from data_pipelines.ingest.faces import decode_image
from data_pipelines.shards import ShardSource, find_dataset_dir
from data_pipelines.synthfaces.attributes import HAIR_COLOURS
from gptface_jax.evals import probe as probe_lib
from gptface_jax.serving import features as features_lib

VALIDATION_FRACTION = 0.1
PIXEL_SIZE = 16


def load_labelled(dataset_dir: str, split: str, image_size: int, max_examples: int = 0) -> dict:
    """Images (N, S, S, 3) uint8 resized to `image_size`, attributes (N, K), expression (N,) and
    hair_colour (N,) labels (-1 where a dataset has no hair colour)."""
    source = ShardSource(dataset_dir, split)
    n = len(source) if max_examples <= 0 else min(len(source), max_examples)
    if n == 0:
        raise DataError(f"{dataset_dir}: split {split!r} is empty")
    images, attributes, expression, hair = [], [], [], []
    for i in range(n):
        record = source[i]
        rgb = decode_image(record["image"])
        if rgb.shape[:2] != (image_size, image_size):
            shrink = rgb.shape[0] > image_size
            rgb = cv2.resize(rgb, (image_size, image_size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
        images.append(rgb)
        attributes.append(np.asarray(record["attributes"], np.int64))
        expression.append(int(record["expression"]))
        hair.append(int(record["hair_colour"]) if "hair_colour" in record else -1)
    return {"images": np.stack(images), "attributes": np.stack(attributes), "expression": np.asarray(expression),
            "hair_colour": np.asarray(hair),
            "attribute_names": list(source.metadata.get("attribute_names", [])),
            "expression_names": list(source.metadata.get("expression_names", []))}


def _info(dataset_dir: str):
    import tensorflow_datasets as tfds
    return tfds.builder_from_directory(os.fspath(find_dataset_dir(dataset_dir))).info


def dataset_name(dataset_dir: str) -> str:
    """'celeba', 'rafdb', ... for benchmark folders, else the builder's name ('synth_faces', 'face_crawl')."""
    info = _info(dataset_dir)
    return str((info.metadata or {}).get("benchmark") or info.name)


def dataset_splits(dataset_dir: str, image_size: int, max_train: int = 0, max_test: int = 0) -> dict:
    """{'train', 'validation', 'test'} as load_labelled dicts; validation carved from train if absent."""
    available = set(_info(dataset_dir).splits)
    if "test" not in available:
        raise DataError(f"{dataset_dir}: a probe needs a 'test' split; it has {sorted(available)}")
    train = load_labelled(dataset_dir, "train", image_size, max_train)
    test = load_labelled(dataset_dir, "test", image_size, max_test)
    if "validation" in available:
        validation = load_labelled(dataset_dir, "validation", image_size, max_test)
    else:
        n = len(train["images"])
        cut = n - max(1, int(round(n * VALIDATION_FRACTION)))
        validation = {k: (v[cut:] if isinstance(v, np.ndarray) else v) for k, v in train.items()}
        train = {k: (v[:cut] if isinstance(v, np.ndarray) else v) for k, v in train.items()}
    return {"train": train, "validation": validation, "test": test}


def pixel_features(images: np.ndarray) -> np.ndarray:
    small = [cv2.resize(im, (PIXEL_SIZE, PIXEL_SIZE), interpolation=cv2.INTER_AREA) for im in images]
    return np.stack(small).reshape(len(images), -1).astype(np.float32) / 255.0


def code_vector_features(vq, codes: np.ndarray) -> np.ndarray:
    """(N, grid, grid) VQ codes -> (N, grid*grid*code_dim): the quantised vectors the image tokens
    stand for, every position; what the tokens carry before any transformer reads them."""
    from gptface_jax.models.vq import VQModel
    z = vq.model.apply({"params": vq.params}, jnp.asarray(codes), method=VQModel.lookup)
    return np.asarray(z, np.float32).reshape(len(codes), -1)


def initial_params(pretrained):
    """The model's parameters at initialisation, as the trainer draws them (same seed, same image-table init)."""
    import flax.linen as nn
    import jax.numpy as jnp

    from gptface_jax.serving import inference
    mc = pretrained.model.config
    example = (jnp.zeros((1, mc.max_text_len), jnp.int32), jnp.zeros((1, mc.image_grid ** 2), jnp.int32))
    params = nn.meta.unbox(pretrained.model.init(jax.random.PRNGKey(pretrained.config.seed), *example))
    try:
        table = inference.initial_image_embeddings(pretrained.config)
    except DataError:
        table = None  # the codebook file went with the shards; the plain random table is the baseline then
    if table is not None:
        params["params"]["image_embed"] = params["params"]["image_embed"].at[: table.shape[0]].set(table)
    return params


def feature_table(pretrained, splits: dict, batch_size: int = 256) -> dict[str, dict[str, np.ndarray]]:
    """{row name: {split: (N, D) features}} for every row of the probe table."""
    fn = features_lib.make_feature_fn(pretrained.model)
    init = initial_params(pretrained)
    rows: dict[str, dict[str, np.ndarray]] = {"gptface_cls": {}, "gptface_mean": {}, "random_init_cls": {},
                                              "random_init_mean": {}, "pixels_16x16": {}, "vq_code_vectors": {}}
    for name, split in splits.items():
        codes = pretrained.image_codes(split["images"])
        trained = features_lib.extract(fn, pretrained.params, codes, batch_size)
        untrained = features_lib.extract(fn, init, codes, batch_size)
        for kind in features_lib.FEATURES:
            rows[f"gptface_{kind}"][name] = trained[kind]
            rows[f"random_init_{kind}"][name] = untrained[kind]
        rows["pixels_16x16"][name] = pixel_features(split["images"])
        grid_codes = codes.reshape(len(codes), pretrained.grid, pretrained.grid)
        rows["vq_code_vectors"][name] = code_vector_features(pretrained.vq, grid_codes)
    return rows


def run_probes(rows: dict, splits: dict) -> dict:
    """Probe every feature row on the attributes, the expression and (SynthFaces) the hair colour the dataset labels."""
    names = splits["train"]["attribute_names"]
    has_attributes = bool(names) and (splits["test"]["attributes"] >= 0).any()
    classes = len(splits["train"]["expression_names"])
    has_expression = classes > 0 and (splits["test"]["expression"] >= 0).any()
    has_hair = (splits["train"]["hair_colour"] >= 0).any() and (splits["test"]["hair_colour"] >= 0).any()
    if not has_attributes and not has_expression:
        raise DataError("the dataset labels neither attributes nor expressions; nothing to probe")
    results = {}
    for row, feats in rows.items():
        result = {}

        def split_of(key, s, feats=feats):
            return probe_lib.Split(feats[s], splits[s][key])

        if has_attributes:
            r = probe_lib.probe_attributes(*(split_of("attributes", s) for s in ("train", "validation", "test")))
            result["attribute_mean_accuracy"] = float(np.nanmean(r["accuracy"]))
            result["attributes"] = {n: float(a) for n, a in zip(names, r["accuracy"])}
            result["attribute_weight_decay"] = {n: float(d) for n, d in zip(names, r["weight_decay"])}
        if has_expression:
            r = probe_lib.probe_classes(*(split_of("expression", s) for s in ("train", "validation", "test")), classes)
            result["expression_accuracy"] = r["accuracy"]
            result["expression_per_class"] = {n: float(a) for n,
                                              a in zip(splits["train"]["expression_names"], r["per_class"])}
            result["expression_weight_decay"] = r["weight_decay"]
        if has_hair:
            r = probe_lib.probe_classes(*(split_of("hair_colour", s) for s in ("train", "validation", "test")),
                                        len(HAIR_COLOURS))
            result["hair_colour_accuracy"] = r["accuracy"]
            result["hair_colour_weight_decay"] = r["weight_decay"]
        results[row] = result
    return results


def markdown(results: dict, dataset: str, test_examples: int = 0) -> str:
    """The probe table. With `test_examples`, the heading says how far apart two accuracies must be
    before they differ (two binomial standard errors at 50%: 0.10 on 100 faces, 0.045 on 500)."""
    split = "test split"
    if test_examples:
        noise = 2 * (0.25 / test_examples) ** 0.5
        split += f", {test_examples} faces; accuracies closer than {noise:.3f} are within noise"
    lines = [f"Linear probes on {dataset} ({split})", "",
             "| features | mean attribute accuracy | expression accuracy | hair colour accuracy |",
             "| --- | --- | --- | --- |"]
    def fmt(v):
        return "-" if v is None else f"{v:.4f}"
    for row, r in results.items():
        lines.append(f"| {row} | {fmt(r.get('attribute_mean_accuracy'))} | {fmt(r.get('expression_accuracy'))} | "
                     f"{fmt(r.get('hair_colour_accuracy'))} |")
    first = next(iter(results.values()))
    if "attributes" in first:
        lines += ["", "| attribute | " + " | ".join(results) + " |", "| --- |" + " --- |" * len(results)]
        for name in first["attributes"]:
            lines.append(f"| {name} | " + " | ".join(f"{r['attributes'][name]:.4f}" for r in results.values()) + " |")
    return "\n".join(lines) + "\n"


def probe(workdir: str, dataset_dir: str, out_dir: str | None = None, max_train: int = 0, max_test: int = 0) -> dict:
    """Runs the probe table; writes probe_<name>.json and .md under `out_dir` (default: the workdir)."""
    from gptface_jax.serving import inference
    pretrained = inference.load(workdir)
    splits = dataset_splits(dataset_dir, pretrained.image_size, max_train, max_test)
    results = run_probes(feature_table(pretrained, splits), splits)
    name = dataset_name(dataset_dir)
    out_dir = out_dir or workdir
    os.makedirs(out_dir, exist_ok=True)
    report = {"dataset": dataset_dir, "workdir": workdir,
              "examples": {s: int(len(v["images"])) for s, v in splits.items()}, "results": results}
    with open(os.path.join(out_dir, f"probe_{name}.json"), "w") as f:
        json.dump(report, f, indent=1)
    table = markdown(results, dataset_dir, len(splits["test"]["images"]))
    with open(os.path.join(out_dir, f"probe_{name}.md"), "w") as f:
        f.write(table)
    return {**report, "markdown": table}
