"""Loading and validating experiment configs, before anything is built or compiled.

Configs are Python files under experiments/ with `get_config(arg)`; they are loaded through
`ml_collections.config_flags` so the usual absl syntax works:

    --config experiments/pretrain.py:tiny --config.train.steps=100

`validate` gathers every inconsistency into one ConfigError, so a bad sweep or override is
reported in full, at once, and never reaches XLA.
"""
from __future__ import annotations

import math
from typing import Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

MESH_AXES = ("data", "fsdp", "tensor")
NUM_SPECIAL_TEXT_IDS = 5  # PAD, CLS, SEP, MASK, UNK


class ConfigError(ValueError):
    """An experiment config that cannot run; the message lists every problem found."""


def load(argv: Sequence[str]) -> ml_collections.ConfigDict:
    """Parses `--config FILE:ARG --config.a.b=V ...` (absl syntax) into a locked, unvalidated config."""
    args = ["gptface", *argv]
    flag_values = flags.FlagValues()
    # sys_argv: the overrides are discovered from these arguments, not from the process's argv.
    config_flags.DEFINE_config_file("config", None, "experiment config: FILE.py[:ARG]",
                                    flag_values=flag_values, lock_config=True, sys_argv=args)
    try:
        rest = flag_values(args, known_only=False)
    except KeyError as e:  # an override of a field the config does not have
        raise ConfigError(f"bad config override: the config has no field {e.args[0]!r} "
                          f"(in {' '.join(a for a in argv if a.startswith('--config.'))})") from e
    except (flags.Error, AttributeError, TypeError, ValueError) as e:
        missing = e.__context__ if isinstance(e.__context__, KeyError) else None
        if missing is not None:  # absl wraps the KeyError of an unknown field
            raise ConfigError(f"bad config override: the config has no field {missing.args[0].strip(chr(39))!r}") from e
        last_line = [line for line in str(e).splitlines() if line.strip()][-1]
        raise ConfigError(f"bad config flag: {last_line}") from e
    if len(rest) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(rest[1:])}")
    if flag_values.config is None:
        raise ConfigError("no config given: pass --config experiments/pretrain.py:tiny")
    return flag_values.config


def data_parallel_size(config: ml_collections.ConfigDict, num_devices: int | None) -> int | None:
    """Devices a batch is split over ('data' x 'fsdp'), or None while the mesh has an open -1."""
    shape = resolve_mesh_shape(config, num_devices)
    if shape is None:
        return None
    sizes = dict(zip(config.mesh.axes, shape))
    return sizes.get("data", 1) * sizes.get("fsdp", 1)


def resolve_mesh_shape(config: ml_collections.ConfigDict, num_devices: int | None) -> tuple[int, ...] | None:
    shape = tuple(int(s) for s in config.mesh.shape)
    if -1 in shape:
        if num_devices is None:
            return None
        fixed = math.prod(s for s in shape if s != -1)
        shape = tuple(num_devices // fixed if s == -1 else s for s in shape)
    return shape


def validate(config: ml_collections.ConfigDict, num_devices: int | None = None) -> ml_collections.ConfigDict:
    """Returns `config` unchanged, or raises ConfigError listing every inconsistency.

    `num_devices` (jax.device_count(), when known) lets the mesh and batch checks resolve -1 axes.
    """
    errors: list[str] = []
    check = lambda ok, msg: ok or errors.append(msg)  # noqa: E731

    # Data and tokenizers.
    size, down = config.data.image_size, config.vq.downsample
    check(size > 0 and down > 0 and size % down == 0,
          f"data.image_size={size} is not divisible by vq.downsample={down}")
    check(down > 0 and down & (down - 1) == 0, f"vq.downsample={down} must be a power of two")
    check(config.vq.codebook_size >= 2, f"vq.codebook_size={config.vq.codebook_size} must be >= 2")
    check(config.text.vocab_size > NUM_SPECIAL_TEXT_IDS,
          f"text.vocab_size={config.text.vocab_size} must exceed the {NUM_SPECIAL_TEXT_IDS} special ids")
    check(config.text.max_len >= 2, f"text.max_len={config.text.max_len} must be >= 2")
    for name in ("caption_noise_rate", "caption_false_rate"):
        v = config.data[name]
        check(0.0 <= v <= 1.0, f"data.{name}={v} must be in [0, 1]")
    check(config.data.num_train >= 1, f"data.num_train={config.data.num_train} must be >= 1")
    check(config.data.get("num_shards", 0) >= 0, f"data.num_shards={config.data.get('num_shards')} must be >= 0")
    check(config.data.worker_count >= 0, f"data.worker_count={config.data.worker_count} must be >= 0")

    # Model.
    m = config.model
    check(m.num_layers >= 1, f"model.num_layers={m.num_layers} must be >= 1")
    check(m.num_heads >= 1 and m.width % m.num_heads == 0,
          f"model.width={m.width} is not divisible by model.num_heads={m.num_heads}")
    check(m.mlp_dim >= 1, f"model.mlp_dim={m.mlp_dim} must be >= 1")
    check(0.0 <= m.dropout < 1.0, f"model.dropout={m.dropout} must be in [0, 1)")
    check(m.get("residual_dtype", "float32") in ("float32", "bfloat16"),
          f"model.residual_dtype={m.get('residual_dtype')!r} must be 'float32' or 'bfloat16'")
    check(m.get("attention", "einsum") in ("einsum", "xla", "cudnn"),
          f"model.attention={m.get('attention')!r} must be 'einsum', 'xla' or 'cudnn'")
    check(m.image_embed_init in ("codebook", "random"),
          f"model.image_embed_init={m.image_embed_init!r} must be 'codebook' or 'random'")
    check(m.get("kernel_init", "normal") in ("normal", "fan_in"),
          f"model.kernel_init={m.get('kernel_init')!r} must be 'normal' or 'fan_in'")
    for name in ("compute_dtype", "param_dtype"):
        check(m[name] in ("float32", "bfloat16", "float16"), f"model.{name}={m[name]!r} is not a float dtype")

    # Masking and losses.
    k = config.masking
    check(len(k.mode_probs) == 3 and min(k.mode_probs) >= 0 and abs(sum(k.mode_probs) - 1) < 1e-6,
          f"masking.mode_probs={tuple(k.mode_probs)} must be 3 non-negative numbers summing to 1 "
          "(joint, image-generation, text-generation)")
    check(len(k.replace_probs) == 3 and min(k.replace_probs) >= 0 and abs(sum(k.replace_probs) - 1) < 1e-6,
          f"masking.replace_probs={tuple(k.replace_probs)} must be 3 non-negative numbers summing to 1")
    for name in ("text_ratio", "image_ratio"):
        check(0.0 < k[name] <= 1.0, f"masking.{name}={k[name]} must be in (0, 1]")
    check(0.0 < k.span_p < 1.0, f"masking.span_p={k.span_p} must be in (0, 1)")
    check(k.max_span >= 1, f"masking.max_span={k.max_span} must be >= 1")
    check(0.0 <= k.unmasked_fraction <= 1.0, f"masking.unmasked_fraction={k.unmasked_fraction} must be in [0, 1]")
    check(0.0 <= k.generation_min_ratio <= 1.0,
          f"masking.generation_min_ratio={k.generation_min_ratio} must be in [0, 1]")
    check(0.0 <= config.loss.caption_dropout < 1.0, f"loss.caption_dropout={config.loss.caption_dropout} must be in [0, 1)")
    for name in ("text_capacity", "image_capacity"):
        check(0.0 < config.loss[name] <= 1.0, f"loss.{name}={config.loss[name]} must be in (0, 1]")
    check(0.0 < config.loss.get("negative_fraction", 0.5) < 1.0,
          f"loss.negative_fraction={config.loss.get('negative_fraction', 0.5)} must be in (0, 1): ITM needs both classes")
    swap = config.loss.get("swap_negative_fraction", 0.0)
    check(0.0 <= swap <= 1.0, f"loss.swap_negative_fraction={swap} must be in [0, 1]")
    check(config.loss.get("swap_vocabulary", 0) >= 0,
          f"loss.swap_vocabulary={config.loss.get('swap_vocabulary', 0)} must be >= 0 (0: curriculum.salient_tokens)")
    check(not config.loss.get("swap_corrective", False) or swap > 0,
          "loss.swap_corrective=True needs swap negatives: set loss.swap_negative_fraction > 0")
    check(0.0 <= config.loss.hard_negative_fraction <= 1.0,
          f"loss.hard_negative_fraction={config.loss.hard_negative_fraction} must be in [0, 1]")

    # Curriculum (older configs may lack the section: then there is no warm-up).
    cur = config.get("curriculum")
    if cur is not None:
        check(0 <= cur.salient_steps <= config.train.steps,
              f"curriculum.salient_steps={cur.salient_steps} must be in [0, train.steps={config.train.steps}]")
        check(0.0 <= cur.get("salient_mix", 0.0) <= 1.0, f"curriculum.salient_mix={cur.get('salient_mix')} must be in [0, 1]")
        check(0.0 <= cur.get("salient_image_mix", 0.0) <= 1.0,
              f"curriculum.salient_image_mix={cur.get('salient_image_mix')} must be in [0, 1]")
        check(cur.salient_tokens >= 1, f"curriculum.salient_tokens={cur.salient_tokens} must be >= 1")
        check(cur.salient_sample >= 2, f"curriculum.salient_sample={cur.salient_sample} must be >= 2")

    # Optimisation.
    t = config.train
    check(t.steps >= 1, f"train.steps={t.steps} must be >= 1")
    check(0 <= t.warmup_steps <= t.steps, f"train.warmup_steps={t.warmup_steps} must be in [0, train.steps={t.steps}]")
    check(t.learning_rate > 0, f"train.learning_rate={t.learning_rate} must be > 0")
    check(t.accum_steps >= 1 and t.batch_size % t.accum_steps == 0,
          f"train.batch_size={t.batch_size} is not divisible by train.accum_steps={t.accum_steps}")
    check(t.log_every >= 1 and t.checkpoint_every >= 1, "train.log_every and train.checkpoint_every must be >= 1")
    check(config.eval.every >= 1 and config.eval.max_examples >= 2,
          f"eval.every={config.eval.every} must be >= 1 and eval.max_examples={config.eval.max_examples} >= 2")
    check(t.keep_checkpoints >= 1, f"train.keep_checkpoints={t.keep_checkpoints} must be >= 1")

    # Mesh and sharding.
    axes, shape = tuple(config.mesh.axes), tuple(config.mesh.shape)
    unknown = [a for a in axes if a not in MESH_AXES]
    check(not unknown, f"mesh.axes has unknown axis {unknown}; known axes are {MESH_AXES}")
    check(len(set(axes)) == len(axes), f"mesh.axes={axes} repeats an axis")
    check(len(shape) == len(axes), f"mesh.shape={shape} needs one size per axis in mesh.axes={axes}")
    check(all(s == -1 or s >= 1 for s in shape) and list(shape).count(-1) <= 1,
          f"mesh.shape={shape}: sizes must be >= 1, with at most one -1")
    for logical, target in config.mesh.logical_rules:
        targets = () if target is None else (target,) if isinstance(target, str) else tuple(target)
        bad = [a for a in targets if a not in axes]
        check(not bad, f"mesh.logical_rules maps {logical!r} to {bad}, which is not in mesh.axes={axes}")
    if not errors and num_devices is not None:
        fixed = math.prod(s for s in shape if s != -1)
        if -1 in shape:
            check(num_devices % fixed == 0,
                  f"mesh.shape={shape}: {num_devices} devices cannot fill the -1 axis (fixed axes use {fixed})")
        else:
            check(fixed == num_devices, f"mesh.shape={shape} uses {fixed} devices but {num_devices} are present")
    if not errors:
        dp = data_parallel_size(config, num_devices)
        micro = t.batch_size // t.accum_steps
        if dp is not None:
            check(micro % dp == 0, f"train.batch_size={t.batch_size} (micro-batch {micro}) is not divisible "
                                   f"by the data-parallel size {dp} (mesh data x fsdp)")
    if errors:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(errors))
    return config
