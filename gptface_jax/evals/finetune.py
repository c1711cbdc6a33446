"""`gptface eval finetune`: the whole pre-trained model plus a linear head on [CLS], trained on a labelled dataset.

The same machinery as pre-training: the experiment config's optimizer (AdamW, warmup + cosine,
clipping), the config's mesh with parameters placed by their logical axes, batches sharded over the
data axes, one jitted step with donated state. The head predicts every attribute (sigmoid, unknown
labels skipped) and the expression (softmax) at once; the image is read alone (text all PAD).
Splits and inputs are the probe's (`downstream.dataset_splits`); the step with the best validation
score (mean of attribute and expression accuracy) is the one scored on test. `init="random"` runs
the same recipe from the model's initialisation (the probe table's `random_init` baseline), so a
reader sees what pre-training bought under fine-tuning too.
"""
from __future__ import annotations

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from data_pipelines.text_tokenizer import PAD
from gptface_jax.evals import downstream
from gptface_jax.models.transformer import abstract_variables, dropout_rng
from gptface_jax.runtime import optimizer, sharding
from gptface_jax.serving import features

INITS = ("pretrained", "random")


def _head_loss(logits, attributes, expression, num_attributes: int):
    attr_logits, expr_logits = logits[:, :num_attributes], logits[:, num_attributes:]
    known = attributes >= 0
    bce = optax.sigmoid_binary_cross_entropy(attr_logits, (attributes == 1).astype(jnp.float32))
    loss = jnp.where(known, bce, 0.0).sum() / jnp.maximum(known.sum(), 1)
    if expr_logits.shape[-1]:
        has = expression >= 0
        ce = optax.softmax_cross_entropy_with_integer_labels(expr_logits, jnp.maximum(expression, 0))
        loss = loss + jnp.where(has, ce, 0.0).sum() / jnp.maximum(has.sum(), 1)
    return loss


def scores(logits: np.ndarray, attributes: np.ndarray, expression: np.ndarray, num_attributes: int) -> dict:
    out = {"loss": float(_head_loss(jnp.asarray(logits), jnp.asarray(attributes), jnp.asarray(expression),
                                    num_attributes))}
    if num_attributes:
        known = attributes >= 0
        correct = ((logits[:, :num_attributes] > 0) == (attributes == 1)) & known
        with np.errstate(invalid="ignore"):
            per = correct.sum(0) / known.sum(0)
        out["attribute_mean_accuracy"], out["attribute_accuracy"] = float(np.nanmean(per)), per
    if logits.shape[1] > num_attributes:
        has = expression >= 0
        out["expression_accuracy"] = float((logits[:, num_attributes:].argmax(-1) == expression)[has].mean())
    return out


def _validation_score(s: dict) -> float:
    return float(np.mean([s[k] for k in ("attribute_mean_accuracy", "expression_accuracy") if k in s]))


def finetune(workdir: str, dataset_dir: str, out_dir: str | None = None, *, steps: int = 300, batch_size: int = 32,
             learning_rate: float = 1e-4, eval_every: int = 50, max_train: int = 0, max_test: int = 0,
             seed: int = 0, init: str = "pretrained") -> dict:
    from gptface_jax.serving import inference
    if init not in INITS:
        raise ValueError(f"init={init!r} must be one of {INITS}")
    pretrained = inference.load(workdir)
    splits = downstream.dataset_splits(dataset_dir, pretrained.image_size, max_train, max_test)
    names = splits["train"]["attribute_names"]
    num_attributes = len(names) if (splits["train"]["attributes"] >= 0).any() else 0
    classes = len(splits["train"]["expression_names"]) if (splits["train"]["expression"] >= 0).any() else 0
    codes = {s: pretrained.image_codes(v["images"]) for s, v in splits.items()}

    config = ml_collections.ConfigDict(pretrained.config.to_dict())
    config.train.learning_rate, config.train.steps = learning_rate, steps
    config.train.warmup_steps, config.train.accum_steps = max(1, steps // 10), 1
    config.mesh.shape = (-1, 1, 1)  # data parallel over whatever devices are present
    mesh, rules = sharding.make_mesh(config), sharding.logical_rules(config)
    if batch_size % jax.device_count():
        raise ValueError(f"batch size {batch_size} does not divide over {jax.device_count()} devices")
    model, tx = pretrained.model, optimizer.make_optimizer(config)
    width = pretrained.model.config.width
    rng = np.random.default_rng(seed)
    params = {"body": pretrained.params if init == "pretrained" else downstream.initial_params(pretrained),
              "head": {"w": jnp.asarray(rng.normal(0, 0.01, (width, num_attributes + classes)), jnp.float32),
                       "b": jnp.zeros((num_attributes + classes,), jnp.float32)}}

    def logits_fn(p, image_codes):
        return features.image_features(model, p["body"], image_codes)["cls"] @ p["head"]["w"] + p["head"]["b"]

    def train_logits_fn(p, image_codes, rng):
        """As logits_fn, with the model's dropout on (features and evaluation stay deterministic)."""
        text = jnp.full((image_codes.shape[0], model.config.max_text_len), PAD, jnp.int32)
        cls = model.apply(p["body"], text, image_codes, deterministic=False, rngs={"dropout": rng})["cls"]
        return cls.astype(jnp.float32) @ p["head"]["w"] + p["head"]["b"]

    def loss_fn(p, batch, rng):
        return _head_loss(train_logits_fn(p, batch["codes"], rng), batch["attributes"], batch["expression"],
                          num_attributes)

    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        replicated = sharding.replicated(mesh)
        body_shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract_variables(model, boxed=True)),
                                                     mesh, rules)
        params = {"body": jax.device_put(params["body"], body_shardings),
                  "head": jax.device_put(params["head"], replicated)}
        state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}

        def train_step(state, batch):
            rng = dropout_rng(seed, state["step"])
            loss, grads = jax.value_and_grad(loss_fn)(state["params"], batch, rng)
            updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
            return {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state,
                    "step": state["step"] + 1}, loss
        step = jax.jit(train_step, donate_argnums=0)
        predict = jax.jit(logits_fn)

        def evaluate(p, split: str) -> dict:
            logits = sharding.run_in_batches(lambda c: predict(p, c), [codes[split]], batch_size,
                                             sharding.global_batch_put(mesh, config))
            return scores(logits, splits[split]["attributes"], splits[split]["expression"], num_attributes)

        train = splits["train"]
        history, best, best_params, best_step = [], -1.0, None, 0
        for i in range(1, steps + 1):
            rows = rng.integers(0, len(codes["train"]), batch_size)
            batch = sharding.to_global({"codes": codes["train"][rows], "attributes": train["attributes"][rows],
                                        "expression": train["expression"][rows]}, mesh, config)
            state, loss = step(state, batch)
            if i % eval_every == 0 or i == steps:
                val = evaluate(state["params"], "validation")
                history.append({"step": i, "train_loss": float(loss),
                                **{f"validation_{k}": v for k, v in val.items() if not isinstance(v, np.ndarray)}})
                if _validation_score(val) > best:
                    best, best_params, best_step = _validation_score(val), jax.device_get(state["params"]), i
        test = evaluate(best_params, "test")
    result = {"dataset": dataset_dir, "workdir": workdir, "init": init, "steps": steps, "batch_size": batch_size,
              "learning_rate": learning_rate, "seed": seed, "best_step": best_step,
              "history": history, "test_attribute_mean_accuracy": test.get("attribute_mean_accuracy"),
              "test_expression_accuracy": test.get("expression_accuracy"),
              "test_attributes": ({n: float(a) for n, a in zip(names, test["attribute_accuracy"])}
                                  if "attribute_accuracy" in test else {})}
    out_dir = out_dir or workdir
    os.makedirs(out_dir, exist_ok=True)
    suffix = "" if init == "pretrained" else f"_{init}_init"
    with open(os.path.join(out_dir, f"finetune_{downstream.dataset_name(dataset_dir)}{suffix}.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result
