"""Training the VQ image tokenizer.

    gptface tokenizer image --config experiments/vq.py:tiny --workdir W

Sections: 1. config  2. data  3. model and state  4. the jitted step  5. the run (train_loop: metrics,
NaN guard, checkpoints, resume, time budget; evaluators from config.evals). Held-out reconstruction is
gptface_jax/evals/reconstruction.py; loading a trained tokenizer is gptface_jax/serving/image_tokenizer.py.
A rerun with the same workdir resumes from the latest checkpoint, input pipeline included.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from data_pipelines.errors import DataError
from data_pipelines.pipeline import ReaderConfig, image_text_dataset
from data_pipelines.shards import ShardError, ShardSource, find_dataset_dir
from gptface_jax.evals import evaluators as evaluators_lib
from gptface_jax.evals.reconstruction import psnr
from gptface_jax.generate.regions import region_names, union
from gptface_jax.models.vq import PatchDiscriminator, VQConfig, VQModel, to_float
from gptface_jax.runtime import config_lib, layout, optimizer, sharding, workdir_lock
from gptface_jax.runtime.checkpoints import Checkpointer, abstract_like
from gptface_jax.runtime.metrics import MetricWriter, compiled_flops
from gptface_jax.train import train_loop

# --- 1. config ---------------------------------------------------------------------------------------------

def vq_config(config) -> VQConfig:
    v = config.vq
    return VQConfig(image_size=config.data.image_size, downsample=v.downsample, codebook_size=v.codebook_size,
                    code_dim=v.code_dim, channels=tuple(v.channels), res_blocks=v.res_blocks, patch=v.patch,
                    beta=v.beta, dtype=v.compute_dtype)


def validate(config, num_devices: int | None = None):
    """Every problem with a VQ config in one ConfigError, before anything is built."""
    errors = config_lib.field_problems(config, "vq")
    if errors:
        raise config_lib.ConfigError("invalid config:\n  - " + "\n  - ".join(errors))
    try:
        vq_config(config).validate()
    except ValueError as e:
        errors.append(str(e))
    t = config.train
    errors += config_lib.optimizer_problems(t)
    errors += config_lib.evals_problems(config.evals)
    regions, region_weight = weighted_regions(config)
    unknown = [r for r in regions if r not in region_names()]
    if unknown:
        errors.append(f"loss.region: unknown regions {unknown}; known regions: {', '.join(region_names())}")
    if region_weight <= 0:
        errors.append(f"loss.region_weight={region_weight} must be > 0")
    if not 0 < config.vq.dead_usage < 1:
        errors.append(f"vq.dead_usage={config.vq.dead_usage} must be in (0, 1)")
    if num_devices is not None and not errors:
        dp = config_lib.data_parallel_size(config, num_devices)
        if t.batch_size % dp:
            errors.append(f"train.batch_size={t.batch_size} is not divisible by the data-parallel size {dp}")
    if errors:
        raise config_lib.ConfigError("invalid config:\n  - " + "\n  - ".join(errors))
    return config


# --- 2. data --------------------------------------------------------------------------------------------------

def dataset_dir(config, workdir: str) -> str:
    if config.data.dir:
        return str(find_dataset_dir(config.data.dir))
    try:
        return str(find_dataset_dir(os.path.join(workdir, layout.VQ_DATA)))
    except ShardError:
        from data_pipelines.synthfaces import builder
        print(f"writing SynthFaces ({config.data.num_train} + {config.data.num_test}) to {workdir}/data", flush=True)
        return builder.build(os.path.join(workdir, layout.VQ_DATA), num=config.data.num_train,
                             num_test=config.data.num_test,
                             image_size=config.data.image_size, seed=config.seed)


# --- 3. model and state -----------------------------------------------------------------------------------

def uses_gan(config) -> bool:
    return config.loss.gan_weight > 0


def init_state(model: VQModel, tx, config, rng) -> dict:
    c = model.config
    images = jnp.zeros((1, c.image_size, c.image_size, 3))
    params = model.init(rng, images)["params"]
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32),
             # usage EMA starts at zero: codes no batch picks are restarted at the first check
            "usage": jnp.zeros((c.codebook_size,), jnp.float32)}
    if uses_gan(config):  # the critic and its optimizer live in the same checkpointed state
        disc = PatchDiscriminator().init(jax.random.fold_in(rng, 1), images)["params"]
        state.update(disc_params=disc, disc_opt_state=tx.init(disc))
    return state


# --- 4. the jitted step -----------------------------------------------------------------------------------

def restart_dead_codes(codebook, usage, z, rng, dead_usage: float):
    """Codes whose usage EMA fell below dead_usage x uniform are moved onto random encoder outputs."""
    k = codebook.shape[0]
    flat = z.reshape(-1, z.shape[-1])
    dead = usage < dead_usage / k
    picks = flat[jax.random.randint(rng, (k,), 0, flat.shape[0])]
    codebook = jnp.where(dead[:, None], picks, codebook)
    usage = jnp.where(dead, 1.0 / k, usage)
    return codebook, usage, dead.sum()


def codebook_stats(codes, k: int) -> tuple[jax.Array, jax.Array]:
    """(fraction of the codebook used, perplexity) of a batch of codes."""
    counts = jnp.bincount(codes.reshape(-1), length=k).astype(jnp.float32)
    probs = counts / counts.sum()
    perplexity = jnp.exp(-jnp.sum(jnp.where(probs > 0, probs * jnp.log(jnp.maximum(probs, 1e-12)), 0.0)))
    return (counts > 0).mean(), perplexity


def weighted_regions(config) -> tuple[list[str], float]:
    """loss.region as a list of names, and loss.region_weight."""
    return [r for r in config.loss.region.split(",") if r], config.loss.region_weight


def pixel_weights(config) -> np.ndarray:
    """(S, S, 1) reconstruction-loss weights: loss.region_weight inside loss.region, 1 elsewhere, mean 1."""
    regions, region_weight = weighted_regions(config)
    inside = union(regions, config.data.image_size)
    weights = np.where(inside, region_weight, 1.0).astype(np.float32)
    return (weights / weights.mean())[:, :, None]


def make_train_step(model: VQModel, tx, config):
    k = model.config.codebook_size
    v, loss_w = config.vq, config.loss
    weights = jnp.asarray(pixel_weights(config))

    critic = PatchDiscriminator()
    gan = uses_gan(config)

    def loss_fn(params, images, disc_params, gan_on):
        recon, codes, z, quant_loss = model.apply({"params": params}, images)
        l1 = jnp.mean(weights * jnp.abs(recon - images))
        l2 = jnp.mean(weights * jnp.square(recon - images))
        loss = loss_w.l1_weight * l1 + loss_w.l2_weight * l2 + quant_loss
        g_loss = jnp.zeros(())
        if gan:  # hinge generator loss, switched on after the warm-up
            g_loss = -jnp.mean(critic.apply({"params": disc_params}, recon))
            loss = loss + gan_on * loss_w.gan_weight * g_loss
        return loss, {"recon": recon, "codes": codes, "z": z, "l1": l1, "l2": l2, "quant_loss": quant_loss,
                      "g_loss": g_loss}

    def critic_loss(disc_params, real, fake):
        return (jnp.mean(jax.nn.relu(1.0 - critic.apply({"params": disc_params}, real)))
                + jnp.mean(jax.nn.relu(1.0 + critic.apply({"params": disc_params}, fake))))

    def step(state, images_uint8, seed_key):
        images = to_float(images_uint8)
        gan_on = (state["step"] >= loss_w.gan_start).astype(jnp.float32)
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"], images, state.get("disc_params"), gan_on)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        extra, gan_metrics = {}, {}
        if gan:
            d_loss, d_grads = jax.value_and_grad(critic_loss)(state["disc_params"], images,
                                                              jax.lax.stop_gradient(aux["recon"]))
            d_grads = jax.tree.map(lambda g: g * gan_on, d_grads)  # the critic waits for the warm-up too
            d_updates, disc_opt_state = tx.update(d_grads, state["disc_opt_state"], state["disc_params"])
            extra = {"disc_params": optax.apply_updates(state["disc_params"], d_updates),
                     "disc_opt_state": disc_opt_state}
            gan_metrics = {"d_loss": d_loss, "g_loss": aux["g_loss"], "gan_on": gan_on}
        freq = jnp.bincount(aux["codes"].reshape(-1), length=k) / aux["codes"].size
        usage = v.usage_decay * state["usage"] + (1 - v.usage_decay) * freq
        step_no = state["step"] + 1
        rng = jax.random.fold_in(seed_key, step_no)

        def restart(args):
            params, usage = args
            codebook, usage, n = restart_dead_codes(params["codebook"], usage, jax.lax.stop_gradient(aux["z"]), rng,
                                                    v.dead_usage)
            return {**params, "codebook": codebook}, usage, n

        params, usage, restarted = jax.lax.cond(step_no % v.restart_every == 0, restart,
                                                lambda a: (a[0], a[1], jnp.zeros((), jnp.int32)), (params, usage))
        used, perplexity = codebook_stats(aux["codes"], k)
        metrics = {"loss": loss, "l1": aux["l1"], "mse": aux["l2"], "quant_loss": aux["quant_loss"],
                   "psnr": psnr(aux["recon"], images).mean(), "batch_code_usage": used, "perplexity": perplexity,
                   "restarted_codes": restarted, "grad_norm": optax.tree.norm(grads),
                   "param_norm": optax.tree.norm(params), **gan_metrics}
        return {"params": params, "opt_state": opt_state, "step": step_no, "usage": usage, **extra}, metrics

    return step


# --- 5. the loop ---------------------------------------------------------------------------------------------------

def train(config, workdir: str) -> dict:
    validate(config, jax.device_count())
    # one run per workdir (process 0 holds the lock for the whole job)
    with workdir_lock.for_job(workdir):
        return _train(config, workdir)


def _train(config, workdir: str) -> dict:
    vq_cfg = vq_config(config)
    data_dir = dataset_dir(config, workdir)
    train_source, test_source = ShardSource(data_dir, "train"), ShardSource(data_dir, "test")
    if train_source.image_shape[0] != vq_cfg.image_size:
        raise DataError(f"{data_dir} holds {train_source.image_shape[0]} px images "
                        f"but data.image_size={vq_cfg.image_size}")

    mesh = sharding.make_mesh(config)
    model = VQModel(vq_cfg)
    tx = optimizer.make_optimizer(config)
    replicated = sharding.replicated(mesh)
    batch_sh = sharding.batch_sharding(mesh, config)
    per_process = config.train.batch_size // jax.process_count()
    reader = ReaderConfig(batch_size=per_process, seed=config.seed, process_index=jax.process_index(),
                          process_count=jax.process_count(), worker_count=config.data.worker_count)
    data_iter = iter(image_text_dataset(train_source, reader))
    primary = jax.process_index() == 0

    with jax.set_mesh(mesh):
        state = jax.jit(lambda r: init_state(model, tx, config, r), out_shardings=replicated)(
            jax.random.PRNGKey(config.seed))
        checkpointer = Checkpointer(workdir, keep=config.train.keep_checkpoints)
        if checkpointer.latest_step() is not None:
            state, data_state = train_loop.restore_state(checkpointer, abstract_like(state, replicated), config.train)
            if data_state:
                data_iter.set_state(data_state)
            print(f"resumed from step {int(state['step'])}", flush=True)
        if primary:  # only now that the state restored: the file describes the checkpoints
            with open(os.path.join(workdir, layout.VQ_CONFIG), "w") as f:
                json.dump(dataclasses.asdict(vq_cfg), f, indent=1)
        step_fn = jax.jit(make_train_step(model, tx, config), in_shardings=(replicated, batch_sh, replicated),
                          out_shardings=(replicated, replicated), donate_argnums=(0,))
        seed_key = jax.random.PRNGKey(config.seed + 1)
        def to_device(b):
            return sharding.to_global({"image": b["image"]}, mesh, config)["image"]
        example = to_device(next(iter(image_text_dataset(train_source, dataclasses.replace(reader, num_epochs=1)))))
        compiled = step_fn.lower(state, example, seed_key).compile()
        flops = compiled_flops(compiled)
        evaluators = evaluators_lib.build(config.evals, {
            "model": model, "mesh": mesh, "config": config, "test_source": test_source,
            "batch_size": config.train.batch_size, "workdir": workdir})
        writer = MetricWriter(workdir, start_step=int(state["step"]))
        started = time.perf_counter()
        state, step, _ = train_loop.run(
            lambda s, b: compiled(s, b, seed_key), state, data_iter, to_device, config.train, checkpointer, writer,
            train_loop.Throughput(flops=flops, xla_flops=flops, samples=config.train.batch_size, sample_name="images"),
            evaluators, desc="vq", primary=primary,
            postfix=lambda m: {"psnr": f"{float(m['psnr']):.2f}", "usage": f"{float(m['batch_code_usage']):.2f}"})
        train_seconds = time.perf_counter() - started
        scores = train_loop.evaluate_all(evaluators, state["params"])
        scores.update(step=step, train_seconds_this_run=round(train_seconds, 1),
                      params=int(sum(x.size for x in jax.tree.leaves(state["params"]))))
        writer.write(step, scores)
        if primary:
            with open(os.path.join(workdir, layout.VQ_EVAL), "w") as f:
                json.dump(scores, f, indent=1)
        checkpointer.close()
        writer.close()
    return scores
