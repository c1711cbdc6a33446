"""GPTFace pre-training: MILM + ITM over pre-tokenized shards, sharded over a device mesh.

    gptface train --config experiments/pretrain.py:tiny --config.data.pretokenized=DIR --workdir W

Sections: 1. config  2. data  3. sharded state  4. the jitted step  5. the run (train_loop: metrics,
NaN guard, checkpoints; evaluators from config.evals). Rerunning with the same workdir resumes
from the latest checkpoint, input pipeline included; a different mesh restores through the
abstract target's shardings.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from data_pipelines.errors import DataError
from data_pipelines.masking import MaskingConfig
from data_pipelines.pipeline import PretrainBatchConfig, ReaderConfig, pretraining_dataset
from data_pipelines.shards import ShardSource, find_dataset_dir
from gptface_jax.evals import evaluators as evaluators_lib
from gptface_jax.models import losses
from gptface_jax.models.transformer import GPTFace, ModelConfig, dropout_rng, example_inputs
from gptface_jax.runtime import config_lib, layout, optimizer, sharding, tokenizer_record, workdir_lock
from gptface_jax.runtime.checkpoints import Checkpointer
from gptface_jax.runtime.metrics import MetricWriter, compiled_flops, transformer_train_flops
from gptface_jax.serving import inference
from gptface_jax.train import negatives, train_loop

# --- 1. config ------------------------------------------------------------------------------------------------

def masking_config(config) -> MaskingConfig:
    k = config.masking
    return MaskingConfig(mode_probs=tuple(k.mode_probs), text_ratio=k.text_ratio, image_ratio=k.image_ratio,
                         span_p=k.span_p, max_span=k.max_span, replace_probs=tuple(k.replace_probs),
                         generation_min_ratio=k.generation_min_ratio)


# --- 2. data ----------------------------------------------------------------------------------------------------

def open_pretokenized(config) -> tuple[ShardSource, ShardSource | None]:
    if not config.data.pretokenized:
        raise DataError("data.pretokenized is empty: point it at the output of `gptface data pretokenize`")
    train = ShardSource(config.data.pretokenized, "train")
    meta = train.metadata
    grid = config.data.image_size // config.vq.downsample
    for what, theirs, ours, key in (("codebook size", meta.get("codebook_size"), config.vq.codebook_size,
                                     "vq.codebook_size"),
                                    ("image grid", meta.get("grid"), grid, "data.image_size / vq.downsample"),
                                    ("text length", meta.get("max_len"), config.text.max_len, "text.max_len")):
        if theirs != ours:
            raise DataError(f"pre-tokenized shards have {what} {theirs} but the config says {key}={ours}")
    if meta.get("text_vocab_size", 0) > config.text.vocab_size:
        raise DataError(f"pre-tokenized shards use a text vocab of {meta['text_vocab_size']} but the config's "
                        f"text.vocab_size={config.text.vocab_size} is smaller")
    if "test" not in train.splits:  # e.g. a crawl ingested without a held-out share: say so, once
        if jax.process_index() == 0 and config.evals:
            print(f"{config.data.pretokenized} has no test split: the held-out evaluators "
                  f"({', '.join(sorted(config.evals))}) are off", flush=True)
        return train, None
    return train, ShardSource(config.data.pretokenized, "test")  # declared but unreadable: a DataError


# --- 3. sharded state -----------------------------------------------------------------------------------------

def state_shardings(model: GPTFace, tx, mesh, rules, image_embed: np.ndarray | None = None):
    """(init, abstract state, NamedShardings) of {params, opt_state, step}.

    Every sharding comes from logical axes: the optimizer is initialised on the boxed (logically
    annotated) parameters under eval_shape, so each moment carries its parameter's names and gets
    its parameter's sharding; unannotated leaves (counts, step) are replicated. `image_embed`
    (codebook_size, width), when given, replaces the first rows of the image table.
    """
    def boxed_state(rng):
        variables = model.init(rng, *example_inputs(model.config))
        return {"params": variables, "opt_state": tx.init(variables), "step": jnp.zeros((), jnp.int32)}

    def init(rng):
        state = nn.meta.unbox(boxed_state(rng))
        params = state["params"]
        if image_embed is not None:
            table = params["params"]["image_embed"]
            params["params"]["image_embed"] = table.at[: image_embed.shape[0]].set(jnp.asarray(image_embed,
                                                                                               table.dtype))
        return {"params": params, "opt_state": tx.init(params), "step": state["step"]}
    boxed = jax.eval_shape(boxed_state, jax.random.PRNGKey(0))
    shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, rules)
    return init, jax.eval_shape(init, jax.random.PRNGKey(0)), shardings


# --- 4. the jitted step ---------------------------------------------------------------------------------------

def make_train_step(model: GPTFace, tx, config):
    """step(state, batch) -> (state, metrics): one optimizer update over the whole batch.

    With train.accum_steps = k the batch is cut into k micro-batches (every k-th row, so each
    device keeps its own rows) and the gradients are summed in a lax.scan; every masked-modelling
    and ITM loss is normalised by the whole batch's counts, so the update equals one step on the
    whole batch. ITC stays a whole-batch loss too (GradCache, Gao et al. 2021): a first pass embeds
    every row without gradients, the loss, its mined negatives and the match logits' similarities
    come from all of them, and each micro-batch then pulls the loss's gradient with respect to its
    own rows' embeddings back through its unimodal passes. Dropout masks draw from
    model.dropout_rng(seed, step): a resumed run draws the same ones.
    """
    c = model.config
    w = config.loss
    k = config.train.accum_steps
    itc_names = ("itc_log_scale", "itc_bias") + (("itc_word_head",) if c.itc_words else ())

    def embed(params, batch, rng):
        """Every row's own clean caption and image through the unimodal passes: (text, image) (B, E)."""
        return model.apply(params, batch["caption_ids"], batch["image_targets"], deterministic=False,
                           rngs={"dropout": jax.random.fold_in(rng, 1)}, method=GPTFace.itc_embeddings)

    def contrastive(itc_params, text_emb, image_emb, batch, rng):
        """ITC over the given rows, the ITM negatives mined from it and each ITM row's similarity logit:
        (itc, (metrics, batch with the mined rows and "similarity_logit"))."""
        itc, metrics = losses.itc_loss(text_emb, image_emb, batch["caption_ids"], itc_params["itc_log_scale"],
                                       itc_params["itc_bias"], w.itc_kind)
        if c.itc_words:  # the text embedding keeps every caption token, not only those the image side matches
            words = losses.caption_word_loss(losses.word_logits(text_emb, itc_params["itc_word_head"]),
                                             batch["caption_ids"])
            metrics = {**metrics, "itc_word_loss": words}
            itc = itc + w.itc_word_weight / w.itc_weight * words  # the contrastive part is scaled by itc_weight
        scale = jnp.exp(itc_params["itc_log_scale"])
        if w.mined_negative_fraction > 0:
            batch, mined = negatives.mine(jax.random.fold_in(rng, 2), batch, text_emb, image_emb, scale,
                                          w.mined_negative_fraction, c.image_mask_id)
            metrics = {**metrics, **mined}
        if c.itm_similarity:  # the match logit also reads the shown pair's unimodal similarity
            caption_row, image_row = negatives.shown_rows(batch)
            cosine = (text_emb[jnp.maximum(caption_row, 0)] * image_emb[image_row]).sum(-1)
            # ITM learns only how far to trust ITC: its pairwise BCE on the embeddings is SigLIP's
            # common-mode gradient, which kept ITC at log(batch) for 350 steps (run q2, docs/experiments.md)
            logit = jax.lax.stop_gradient(scale * cosine)
            batch = {**batch, "similarity_logit": jnp.where(caption_row >= 0, logit, 0.0)}
        return itc, (metrics, batch)

    def loss_fn(params, batch, rng, normalisers):
        """The loss to differentiate and its metrics ("loss": the objective's value).

        Without "itc_grad_text" in `batch` the rows are the whole batch and ITC is computed here;
        with it (a micro-batch) ITC enters as <cached gradient, embedding>, whose gradient is the
        whole-batch loss's for these rows; its value and metrics come from `gradients`."""
        contrastive_part, reported, extra = 0.0, 0.0, {}
        if w.itc_weight > 0:
            text_emb, image_emb = embed(params, batch, rng)
            if "itc_grad_text" in batch:
                contrastive_part = ((batch["itc_grad_text"] * text_emb).sum()
                                    + (batch["itc_grad_image"] * image_emb).sum())
            else:
                itc_params = {name: params["params"][name] for name in itc_names}
                contrastive_part, (extra, batch) = contrastive(itc_params, text_emb, image_emb, batch, rng)
                reported = contrastive_part
        out = model.apply(params, batch["text_inputs"], batch["image_inputs"], deterministic=False,
                          rngs={"dropout": rng})
        if c.itm_similarity:
            term = model.apply(params, batch["similarity_logit"], method=GPTFace.similarity_term)
            out = {**out, "itm_logits": out["itm_logits"].at[:, 1].add(term)}
        total, (metrics, _) = losses.milm_itm_loss(
            lambda h: model.apply(params, h, method=GPTFace.text_logits),
            lambda h: model.apply(params, h, method=GPTFace.image_logits),
            out, batch, max_text_len=c.max_text_len, capacity_text=w.text_capacity, capacity_image=w.image_capacity,
            weights=(w.text_weight, w.image_weight, w.itm_weight), normalisers=normalisers)
        if w.itc_weight > 0:
            metrics = {**metrics, **extra, "loss": total + w.itc_weight * reported}
            total = total + w.itc_weight * contrastive_part
        return total, metrics

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def split(batch):
        return jax.tree.map(lambda x: x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1), batch)

    def cached_contrastive(params, batch, rng):
        """Pass 1 of an accumulated step: every row embedded micro-batch by micro-batch (no gradient),
        then the whole batch's ITC with its gradients. Returns the batch (mined rows, similarity logits,
        the cached embedding gradients), the ITC parameters' gradients, the loss and its metrics."""
        def one(_, xs):
            i, micro_batch = xs
            return None, embed(params, micro_batch, jax.random.fold_in(rng, i))
        _, (text_emb, image_emb) = jax.lax.scan(one, None, (jnp.arange(k), split(batch)))
        text_emb, image_emb = (jax.lax.stop_gradient(e.swapaxes(0, 1).reshape(-1, e.shape[-1]))
                               for e in (text_emb, image_emb))  # back to batch order (row j * k + i)
        itc_params = {name: params["params"][name] for name in itc_names}
        (itc, (metrics, batch)), (g_params, g_text, g_image) = jax.value_and_grad(
            contrastive, argnums=(0, 1, 2), has_aux=True)(itc_params, text_emb, image_emb, batch, rng)
        return {**batch, "itc_grad_text": g_text, "itc_grad_image": g_image}, g_params, itc, metrics

    def gradients(params, batch, rng):
        if k == 1:
            (_, metrics), grads = grad_fn(params, batch, rng, None)
        else:
            if w.itc_weight > 0:
                batch, itc_grads, itc, itc_metrics = cached_contrastive(params, batch, rng)
            normalisers = losses.accumulation_normalisers(batch, k, w.text_capacity, w.image_capacity)
            micro = split(batch)

            def add(total, xs):
                i, micro_batch = xs
                (_, metrics), grads = grad_fn(params, micro_batch, jax.random.fold_in(rng, i), normalisers)
                return jax.tree.map(jnp.add, total, (grads, metrics)), None
            (_, metric_shapes), grad_shapes = jax.eval_shape(grad_fn, params, jax.tree.map(lambda x: x[0], micro), rng,
                                                             normalisers)
            zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), (grad_shapes, metric_shapes))
            (grads, metrics), _ = jax.lax.scan(add, zeros, (jnp.arange(k), micro))
            # losses and accuracies were normalised by the whole batch: their sums are the batch's values;
            # overflow counts are per micro-batch: their mean
            metrics = {**metrics, "text_overflow": metrics["text_overflow"] / k,
                       "image_overflow": metrics["image_overflow"] / k}
            if w.itc_weight > 0:
                grads = {**grads, "params": {**grads["params"], **{
                    name: grads["params"][name] + w.itc_weight * itc_grads[name] for name in itc_names}}}
                metrics = {**metrics, **itc_metrics, "loss": metrics["loss"] + w.itc_weight * itc}
        if c.itm_similarity:
            metrics = {**metrics, "itm_similarity_gain": params["params"]["itm_similarity_gain"]}
        return grads, metrics

    def step(state, batch):
        rng = dropout_rng(config.seed, state["step"])
        grads, metrics = gradients(state["params"], batch, rng)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        metrics = {**metrics, "grad_norm": optax.tree.norm(grads), "param_norm": optax.tree.norm(params),
                   "learning_rate": optimizer.current_learning_rate(config.train, state["opt_state"], state["step"])}
        return {"params": params, "opt_state": opt_state, "step": state["step"] + 1}, metrics

    return step


# --- 5. the run ------------------------------------------------------------------------------------------------

def _training_figures(final_metrics_path: str) -> dict:
    """The last step's training metrics (no `eval_` scores) of a run's final_metrics.json, if it has one."""
    try:
        with open(final_metrics_path) as f:
            stored = json.load(f)
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in stored.items() if not k.startswith("eval_")}


def train(config, workdir: str) -> dict:
    config_lib.validate(config, jax.device_count())
    # one run per workdir (process 0 holds the lock for the whole job)
    with workdir_lock.for_job(workdir):
        return _train(config, workdir)


def _train(config, workdir: str) -> dict:
    primary = jax.process_index() == 0
    config = copy.deepcopy(config)  # the caller's config stays as given
    # stored absolute, as the dataset folder itself (`gptface data pretokenize --out` writes it a few
    # levels down): the workdir's config.json then works from any directory, and so do the codebook
    # and tokenizer paths read beside the shards
    if config.data.pretokenized:
        config.data.pretokenized = os.path.abspath(find_dataset_dir(config.data.pretokenized))
    train_source, test_source = open_pretokenized(config)
    mesh = sharding.make_mesh(config)
    rules = sharding.logical_rules(config)
    model = GPTFace(ModelConfig.from_config(config))
    tx = optimizer.make_optimizer(config)
    mc = model.config
    checkpointer = Checkpointer(workdir, keep=config.train.keep_checkpoints)
    # before anything compiles: a resumed run reads the tokenizers it trained with
    tokenizer_record.check_or_write(workdir, config.data.pretokenized, checkpointer.latest_step() is not None,
                                    primary)
    batch_cfg = PretrainBatchConfig(image_mask_id=mc.image_mask_id, text_vocab_size=config.text.vocab_size,
                                    grid=mc.image_grid, masking=masking_config(config),
                                    negative_fraction=config.loss.negative_fraction,
                                    hard_fraction=config.loss.hard_negative_fraction,
                                    caption_dropout=config.loss.caption_dropout,
                                    unmasked_fraction=config.masking.unmasked_fraction,
                                    seed=config.seed, shard=jax.process_index())
    batch_size = config.train.batch_size  # one batch per optimizer update; accumulation splits it in the step
    micro = batch_size // config.train.accum_steps
    reader = ReaderConfig(batch_size=batch_size // jax.process_count(), seed=config.data.shuffle_seed,
                          process_index=jax.process_index(), process_count=jax.process_count(),
                          worker_count=config.data.worker_count)
    def open_data(r):
        return pretraining_dataset(train_source, r, batch_cfg, num_shards=config.data.num_shards)
    data_iter = iter(open_data(reader))
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        init, abstract, shardings = state_shardings(model, tx, mesh, rules, inference.initial_image_embeddings(config))
        if checkpointer.latest_step() is not None:
            target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
            state, data_state = train_loop.restore_state(checkpointer, target, config.train)
            if data_state:
                data_iter.set_state(data_state)
            if primary:
                print(f"resumed from step {int(state['step'])}", flush=True)
        else:
            state = jax.jit(init, out_shardings=shardings)(jax.random.PRNGKey(config.seed))
        if primary:  # only now: the state restored (or was built), so the config describes the checkpoints
            with open(os.path.join(workdir, layout.CONFIG), "w") as f:
                f.write(config.to_json_best_effort(indent=1))
        def to_device(b):
            return sharding.to_global(b, mesh, config)
        first = to_device(next(iter(open_data(dataclasses.replace(reader, num_epochs=1)))))
        step_fn = jax.jit(make_train_step(model, tx, config), out_shardings=(shardings, sharding.replicated(mesh)),
                          donate_argnums=(0,))
        compiled = step_fn.lower(state, first).compile()
        micro_flops = transformer_train_flops(
            layers=mc.num_layers, width=mc.width, mlp=mc.mlp_dim, seq=mc.seq_len, batch=micro,
            text_vocab=mc.text_vocab, codebook=mc.codebook_size,
            text_rows=losses.capacity_rows(micro, mc.max_text_len, config.loss.text_capacity),
            image_rows=losses.capacity_rows(micro, mc.image_grid ** 2, config.loss.image_capacity))
        rates = train_loop.Throughput(flops=micro_flops * config.train.accum_steps, xla_flops=compiled_flops(compiled),
                                      samples=batch_size, tokens=batch_size * mc.seq_len)
        evaluators = evaluators_lib.build(config.evals, {
            "model": model, "mesh": mesh, "config": config, "test_source": test_source, "batch_size": micro})
        writer = MetricWriter(workdir, start_step=int(state["step"]))
        state, step, metrics = train_loop.run(
            compiled, state, data_iter, to_device, config.train, checkpointer, writer, rates, evaluators,
            desc="pretrain", primary=primary,
            postfix=lambda m: {"loss": f"{float(m['loss']):.3f}", "itm": f"{float(m['itm_accuracy']):.2f}"})
        scores = train_loop.evaluate_all(evaluators, state["params"])
        final = {"step": step, **{k: float(v) for k, v in jax.device_get(metrics).items()}, **scores}
        if not metrics:  # resumed at the last step: nothing trained, so keep the finished run's training figures
            final = {**_training_figures(os.path.join(workdir, layout.FINAL_METRICS)), **final}
        writer.write(step, scores)
        if primary:
            with open(os.path.join(workdir, layout.FINAL_METRICS), "w") as f:
                json.dump(final, f, indent=1)
        checkpointer.close()
        writer.close()
    return final
