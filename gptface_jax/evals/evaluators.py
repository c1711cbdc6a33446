"""Evaluators a training loop runs as it trains, big_vision style:

    config.evals.itm = dict(type="itm", every=500, max_examples=1000)
    config.evals.probe = dict(type="probe", every=500, max_examples=1000, feature="cls")

Each entry's `type` names a builder in REGISTRY; the builder takes the entry and the run's context
(model, mesh, config, held-out source, ...) and returns a function of the parameters that gives
`eval_*` metrics. Every evaluator also runs once at the end of a run.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from gptface_jax.runtime import config_lib, layout


@dataclasses.dataclass(frozen=True)
class Evaluator:
    """One entry of config.evals, built: run every `every` steps and at the end of a run."""
    name: str
    every: int
    run: Callable[[dict], dict]      # params -> {metric: value}


REGISTRY: dict = {}


def register(kind: str):
    """A builder for entries of this `type`; their fields are config_lib.EVALUATORS[kind]."""
    if kind not in config_lib.EVALUATORS:
        raise KeyError(f"evaluator {kind!r} has no entry in config_lib.EVALUATORS (its config fields)")

    def add(builder):
        REGISTRY[kind] = builder
        return builder
    return add


def build(evals, context: dict) -> tuple[Evaluator, ...]:
    """One Evaluator per `config.evals` entry (in name order) whose `every` is not 0 (off, e.g.
    `--config.evals.probe.every=0`); config_lib has checked the entries."""
    out = []
    for name in sorted(evals):
        spec = evals[name]
        if spec.every == 0:
            continue
        run = REGISTRY[spec.type](spec, context)
        if run is not None:  # e.g. held-out ITM without a test split
            out.append(Evaluator(name, spec.every, run))
    return tuple(out)


@register("itm")
def itm(spec, context):
    """Held-out ITM (clean and weak pairs) and the cross-modal gains (gptface_jax/evals/itm_eval.py)."""
    from gptface_jax.evals import itm_eval
    from gptface_jax.serving import scorers
    source = context["test_source"]
    if source is None:
        return None
    model, mesh, config = context["model"], context["mesh"], context["config"]
    sets = itm_eval.eval_sets(source, spec.max_examples)
    itm_fn, caption_fn = scorers.itm_scorer(model, mesh), scorers.caption_scorer(model, mesh)
    image_fn = scorers.image_scorer(model, mesh)
    return lambda params: itm_eval.evaluate(itm_fn, params, sets, mesh, config, context["batch_size"],
                                            caption_fn, image_fn)


# Probe splits of the held-out faces: fit on the first 60%, choose the weight decay on the next 20%,
# score on the last 20% (the protocol of gptface_jax/evals/probe.py on a split of one set).
PROBE_FRACTIONS = (0.6, 0.2)


@register("probe")
def probe(spec, context):
    """Linear probes of the image-only features on held-out SynthFaces labels: attributes and expression."""
    from data_pipelines.synthfaces.attributes import EXPRESSIONS
    from gptface_jax.evals import itm_eval
    from gptface_jax.evals import probe as probe_lib
    from gptface_jax.serving import features
    source = context["test_source"]
    if source is None:
        return None
    split = itm_eval.load_split(source, spec.max_examples)
    if "attributes" not in split:
        return None  # an ingested crawl has no labels to probe
    import jax

    from gptface_jax.runtime import sharding
    model, mesh = context["model"], context["mesh"]
    n = len(split["image_codes"])
    cut = np.cumsum([int(f * n) for f in PROBE_FRACTIONS])
    parts = np.split(np.arange(n), cut)
    # replicated outputs: every process reads every feature (and fits the same probes)
    feature_fn = jax.jit(lambda p, c: features.image_features(model, p, c)[spec.feature],
                         out_shardings=sharding.replicated(mesh))
    put = sharding.global_batch_put(mesh, context["config"])

    def run(params):
        x = sharding.run_in_batches(lambda c: feature_fn(params, c), [split["image_codes"]], context["batch_size"], put)
        attr = [probe_lib.Split(x[p], split["attributes"][p]) for p in parts]
        expr = [probe_lib.Split(x[p], split["expression"][p]) for p in parts]
        attributes = probe_lib.probe_attributes(*attr)["accuracy"]
        expression = probe_lib.probe_classes(*expr, classes=len(EXPRESSIONS))["accuracy"]
        return {"eval_probe_attribute_mean_accuracy": float(np.nanmean(attributes)),
                "eval_probe_expression_accuracy": float(expression)}
    return run


@register("reconstruction")
def reconstruction(spec, context):
    """The VQ tokenizer on the held-out split: PSNR, L1, MSE, codebook use; writes reconstructions.png."""
    import os

    import jax

    from gptface_jax.evals import reconstruction
    model = context["model"]
    eval_fn = jax.jit(reconstruction.make_eval_step(model))

    def run(params):
        scores, grid = reconstruction.evaluate(eval_fn, params, context["test_source"], context["batch_size"],
                                         model.config.codebook_size, context["mesh"], context["config"])
        if jax.process_index() == 0:
            reconstruction.save_grid(grid, os.path.join(context["workdir"], layout.RECONSTRUCTIONS))
        return scores
    return run


def recall_at(similarity: np.ndarray, positive: np.ndarray, k: int) -> float:
    """Share of rows whose top-k columns by `similarity` hold a positive."""
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return float(np.take_along_axis(positive, top, 1).any(1).mean())


def chance_recall(positive: np.ndarray, k: int) -> float:
    """Expected recall@k of a random ranking, given each row's number of positives."""
    n = positive.shape[1]
    miss = np.ones(len(positive))
    for t in range(k):
        miss *= np.clip(n - positive.sum(1) - t, 0, None) / (n - t)
    return float((1 - miss).mean())


@register("retrieval")
def retrieval(spec, context):
    """Held-out image->text and text->image recall@1/@5 by the ITC embeddings, chance beside them,
    and the AUC of the embeddings' cosine on the clean and weak ITM pairs of the same faces (the
    dual encoder judging pairs, beside the fusion pass's ITM).

    A caption identical to an image's own counts as its caption (and that image as the caption's).
    """
    import jax

    from gptface_jax.evals import itm_eval
    from gptface_jax.models import losses
    from gptface_jax.models.transformer import GPTFace
    from gptface_jax.runtime import sharding
    model, mesh, config, source = context["model"], context["mesh"], context["config"], context["test_source"]
    if source is None or not model.config.itc_dim:
        return None
    split = itm_eval.load_split(source, spec.max_examples)
    text, codes = split["text_ids"], split["image_codes"]
    positive = losses.identical_captions(text)
    pairs = itm_eval.pair_indices(split)
    embed = jax.jit(lambda p, t, c: model.apply(p, t, c, method=GPTFace.itc_embeddings),
                    out_shardings=sharding.replicated(mesh))
    put = sharding.global_batch_put(mesh, config)

    def run(params):
        text_emb, image_emb = sharding.run_in_batches(lambda t, c: embed(params, t, c), [text, codes],
                                                      context["batch_size"], put)
        similarity = image_emb @ text_emb.T   # (images, captions)
        scores = {"eval_retrieval_faces": int(len(text))}
        for k in (1, 5):
            scores[f"eval_retrieval_i2t_r{k}"] = recall_at(similarity, positive, k)
            scores[f"eval_retrieval_t2i_r{k}"] = recall_at(similarity.T, positive, k)
            scores[f"eval_retrieval_chance_r{k}"] = chance_recall(positive, k)
        for name, p in pairs.items():
            scores[f"eval_retrieval_{name}_auc"] = itm_eval.auc(similarity[p["image"], p["caption"]], p["label"])
        return scores
    return run
