"""Loading and validating experiment configs, before anything is built or compiled.

Configs are Python files under experiments/ with `get_config(arg)`; they are loaded through
`ml_collections.config_flags` so the usual absl syntax works:

    --config experiments/pretrain.py:tiny --config.train.steps=100

`validate` gathers every inconsistency into one ConfigError, so a bad sweep or override is
reported in full, at once, and never reaches XLA. The experiment file's config is the one source
of truth: library code reads its fields directly, and a field the reference config
(`reference_config`) does not have is refused by name. Workdirs written by earlier versions are
brought up to date in one place, `upgrade`.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

MESH_AXES = ("data", "fsdp", "tensor")
NUM_SPECIAL_TEXT_IDS = 5  # PAD, CLS, SEP, MASK, UNK


# The `evals` section's schema: each evaluator type (gptface_jax/evals/evaluators.py) and the fields
# its entries have besides `type` and `every`.
EVALUATORS = {"itm": ("max_examples",), "probe": ("max_examples", "feature"), "reconstruction": (),
              "retrieval": ("max_examples",)}
IMAGE_FEATURES = ("cls", "mean")  # the image-only features a probe reads (gptface_jax/serving/features.py)


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


def reference_config(kind: str = "pretrain") -> ml_collections.ConfigDict:
    """The field set every config of `kind` ('pretrain' or 'vq') has: the experiment file's tiny variant."""
    if kind == "pretrain":
        from experiments import pretrain
        return pretrain.get_config("tiny")
    from experiments import vq
    return vq.get_config("tiny")


def _paths(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        if isinstance(value, dict) and key != "evals":  # evaluator entries are checked by their type
            out |= _paths(value, f"{prefix}{key}.")
        else:
            out.add(f"{prefix}{key}")
    return out


def field_problems(config, kind: str = "pretrain") -> list[str]:
    """Fields `config` has that the reference does not (unknown, or no longer read), and fields it lacks."""
    ours, reference = _paths(config.to_dict()), _paths(reference_config(kind).to_dict())
    return ([f"{p}: unknown config field (nothing reads it)" for p in sorted(ours - reference)]
            + [f"{p}: missing config field" for p in sorted(reference - ours)])


# Fields added to the pre-training config since the first workdirs were written, with the values
# that reproduce how those runs trained (what the library assumed while the field was absent).
ADDED_FIELDS = {
    "data.num_shards": 0,
    "model.attention": "einsum", "model.tie_heads": True, "model.kernel_init": "normal",
    "model.residual_dtype": "float32", "model.remat": "none", "model.scan_layers": False,
    "loss.negative_fraction": 0.5,
    "model.itc_dim": 0, "model.itm_similarity": False, "loss.itc_weight": 0.0, "loss.itc_kind": "softmax",
    "loss.mined_negative_fraction": 0.0, "model.itc_words": False, "loss.itc_word_weight": 0.0,
    "train.b1": 0.9, "train.b2": 0.98, "train.end_lr_fraction": 0.1, "train.time_budget_s": 0.0,
    "train.divergence_factor": 0.0, "train.schedule_steps": 0, "train.cooldown_steps": 0,
}
# Fields that nothing read (pre-training reads data.pretokenized; the SynthFaces sizes and caption
# rates belong to `gptface data synth` and the VQ config).
RETIRED_FIELDS = ("model.param_dtype", "model.itc_pool", "data.source", "data.dir", "data.num_train",
                  "data.num_test", "data.caption_noise_rate", "data.caption_false_rate")
# Mechanisms deleted once contrastive alignment made them redundant (BENCHMARKS.md, "Align before
# fuse: the recipe table"), with the value that meant "off". A run that had one on cannot be resumed
# or loaded by this version (its objective, and for itm_agreement its parameters, are gone).
RETIRED_MECHANISMS = {
    "model.itm_agreement": False, "loss.swap_negative_fraction": 0.0, "loss.swap_corrective": False,
    "curriculum.salient_steps": 0, "curriculum.salient_mix": 0.0, "curriculum.salient_image_mix": 0.0,
}
RETIRED_WITH_THEM = ("loss.swap_vocabulary", "loss.swap_exclusive", "loss.swap_symmetric",
                     "curriculum.salient_tokens", "curriculum.salient_sample")
RETIRED_AT = "commit 6266609 (2026-12-02)"   # the last commit that trains and loads them


def _pop(raw: dict, path: str, default=None):
    """Removes the field at dotted `path` from nested dicts; returns its value (or `default`)."""
    *parents, leaf = path.split(".")
    node = raw
    for p in parents:
        node = node.get(p, {})
    return node.pop(leaf, default)


def upgrade(raw: dict) -> ml_collections.ConfigDict:
    """A workdir's config.json from any earlier version -> a config with today's fields.

    `eval.{every, max_examples}` becomes the `itm` evaluator, retired fields are dropped, added
    fields take the values that reproduce the old run (ADDED_FIELDS). What is still missing or
    unknown after that is a ConfigError naming it.
    """
    raw = copy.deepcopy(raw)
    if "eval" in raw:
        old = raw.pop("eval")
        raw["evals"] = {"itm": {"type": "itm", "every": old["every"], "max_examples": old["max_examples"]}}
    values = {path: _pop(raw, path, off) for path, off in RETIRED_MECHANISMS.items()}
    on = [f"{path}={value!r}" for path, value in values.items() if value != RETIRED_MECHANISMS[path]]
    if on:
        raise ConfigError(f"this run was trained with {', '.join(on)}, a mechanism this version no longer has; "
                          f"load or resume it with {RETIRED_AT} or earlier")
    for path in (*RETIRED_FIELDS, *RETIRED_WITH_THEM):
        _pop(raw, path)
    if not raw.get("curriculum", True):
        raw.pop("curriculum")
    for path, value in ADDED_FIELDS.items():
        *parents, leaf = path.split(".")
        node = raw
        for p in parents:
            node = node.setdefault(p, {})
        node.setdefault(leaf, value)
    if "mesh" in raw:  # the stacked-layers axis of scan_layers (replicated) joined the logical rules
        rules = [tuple(r) for r in raw["mesh"]["logical_rules"]]
        if "layers" not in {r[0] for r in rules}:
            raw["mesh"]["logical_rules"] = [*rules, ("layers", None)]
    config = ml_collections.ConfigDict(raw)
    problems = field_problems(config)
    if problems:
        raise ConfigError("cannot bring this config.json up to date:\n  - " + "\n  - ".join(problems))
    return config


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
    errors: list[str] = field_problems(config)
    if errors:  # the checks below read fields by name: report the field set first
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(errors))
    def check(ok, msg):
        return ok or errors.append(msg)

    # Data and tokenizers.
    size, down = config.data.image_size, config.vq.downsample
    check(size > 0 and down > 0 and size % down == 0,
          f"data.image_size={size} is not divisible by vq.downsample={down}")
    check(down > 0 and down & (down - 1) == 0, f"vq.downsample={down} must be a power of two")
    check(config.vq.codebook_size >= 2, f"vq.codebook_size={config.vq.codebook_size} must be >= 2")
    check(config.text.vocab_size > NUM_SPECIAL_TEXT_IDS,
          f"text.vocab_size={config.text.vocab_size} must exceed the {NUM_SPECIAL_TEXT_IDS} special ids")
    check(config.text.max_len >= 2, f"text.max_len={config.text.max_len} must be >= 2")
    check(config.data.num_shards >= 0, f"data.num_shards={config.data.num_shards} must be >= 0")
    check(config.data.worker_count >= 0, f"data.worker_count={config.data.worker_count} must be >= 0")

    # Model.
    m = config.model
    check(m.num_layers >= 1, f"model.num_layers={m.num_layers} must be >= 1")
    check(m.width >= 1, f"model.width={m.width} must be >= 1")
    check(m.num_heads >= 1 and m.width % m.num_heads == 0,
          f"model.width={m.width} is not divisible by model.num_heads={m.num_heads}")
    check(m.mlp_dim >= 1, f"model.mlp_dim={m.mlp_dim} must be >= 1")
    check(0.0 <= m.dropout < 1.0, f"model.dropout={m.dropout} must be in [0, 1)")
    check(m.residual_dtype in ("float32", "bfloat16"),
          f"model.residual_dtype={m.residual_dtype!r} must be 'float32' or 'bfloat16'")
    check(m.attention in ("einsum", "xla", "cudnn"),
          f"model.attention={m.attention!r} must be 'einsum', 'xla' or 'cudnn'")
    check(m.remat in ("none", "full", "dots_saveable"),
          f"model.remat={m.remat!r} must be 'none', 'full' or 'dots_saveable'")
    check(m.image_embed_init in ("codebook", "random"),
          f"model.image_embed_init={m.image_embed_init!r} must be 'codebook' or 'random'")
    check(m.kernel_init in ("normal", "fan_in"), f"model.kernel_init={m.kernel_init!r} must be 'normal' or 'fan_in'")
    check(m.compute_dtype in ("float32", "bfloat16", "float16"),
          f"model.compute_dtype={m.compute_dtype!r} is not a float dtype")

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
    weights = {name: config.loss[name] for name in ("text_weight", "image_weight", "itm_weight")}
    for name, value in weights.items():
        check(value >= 0, f"loss.{name}={value} must be >= 0")
    check(any(v > 0 for v in weights.values()) or config.loss.itc_weight > 0,
          "every loss weight is 0: set loss.text_weight, image_weight, itm_weight or itc_weight > 0")
    check(0.0 <= config.loss.caption_dropout < 1.0,
          f"loss.caption_dropout={config.loss.caption_dropout} must be in [0, 1)")
    for name in ("text_capacity", "image_capacity"):
        check(0.0 < config.loss[name] <= 1.0, f"loss.{name}={config.loss[name]} must be in (0, 1]")
    check(0.0 < config.loss.negative_fraction < 1.0,
          f"loss.negative_fraction={config.loss.negative_fraction} must be in (0, 1): ITM needs both classes")
    check(m.itc_dim >= 0, f"model.itc_dim={m.itc_dim} must be >= 0 (0: no ITC heads)")
    check(config.loss.itc_weight >= 0, f"loss.itc_weight={config.loss.itc_weight} must be >= 0")
    check(config.loss.itc_weight == 0 or m.itc_dim > 0,
          f"loss.itc_weight={config.loss.itc_weight} needs ITC heads: set model.itc_dim > 0 (e.g. 128)")
    check(config.loss.itc_word_weight >= 0, f"loss.itc_word_weight={config.loss.itc_word_weight} must be >= 0")
    check((config.loss.itc_word_weight > 0) == bool(m.itc_words),
          "model.itc_words=True and loss.itc_word_weight > 0 go together (the head and its loss)")
    check(not m.itc_words or config.loss.itc_weight > 0,
          "model.itc_words=True reads the ITC text embedding: set model.itc_dim > 0 and loss.itc_weight > 0")
    check(not m.itm_similarity or config.loss.itc_weight > 0,
          "model.itm_similarity=True reads the ITC embeddings: set model.itc_dim > 0 and loss.itc_weight > 0")
    check(config.loss.itc_kind in ("sigmoid", "softmax"),
          f"loss.itc_kind={config.loss.itc_kind!r} must be 'sigmoid' or 'softmax'")
    mined = config.loss.mined_negative_fraction
    check(0.0 <= mined <= 1.0, f"loss.mined_negative_fraction={mined} must be in [0, 1]")
    check(mined == 0 or config.loss.itc_weight > 0,
          f"loss.mined_negative_fraction={mined} mines from the ITC similarities: set loss.itc_weight > 0")
    check(0.0 <= config.loss.hard_negative_fraction <= 1.0,
          f"loss.hard_negative_fraction={config.loss.hard_negative_fraction} must be in [0, 1]")

    # Optimisation.
    t = config.train
    errors += optimizer_problems(t)
    check(t.accum_steps >= 1 and t.batch_size % t.accum_steps == 0,
          f"train.batch_size={t.batch_size} is not divisible by train.accum_steps={t.accum_steps}")
    check(t.keep_checkpoints >= 1, f"train.keep_checkpoints={t.keep_checkpoints} must be >= 1")
    errors += evals_problems(config.evals)

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


def optimizer_problems(t) -> list[str]:
    """The checks of `config.train` that every trainer shares (steps, schedule, AdamW, clipping, batch)."""
    errors = []
    def check(ok, msg):
        return ok or errors.append(msg)
    check(t.steps >= 1, f"train.steps={t.steps} must be >= 1")
    check(0 <= t.warmup_steps <= t.steps, f"train.warmup_steps={t.warmup_steps} must be in [0, train.steps={t.steps}]")
    horizon = t.get("schedule_steps", 0)
    check(horizon == 0 or horizon > t.warmup_steps,
          f"train.schedule_steps={horizon} must be 0 (train.steps) or > train.warmup_steps={t.warmup_steps}")
    check(t.batch_size >= 1, f"train.batch_size={t.batch_size} must be >= 1")
    check(t.learning_rate > 0, f"train.learning_rate={t.learning_rate} must be > 0")
    check(t.grad_clip > 0, f"train.grad_clip={t.grad_clip} must be > 0 (a negative clip reverses the gradient)")
    check(t.weight_decay >= 0, f"train.weight_decay={t.weight_decay} must be >= 0")
    check(0 <= t.b1 < 1 and 0 <= t.b2 < 1, f"train.b1={t.b1} and train.b2={t.b2} must be in [0, 1)")
    check(0 <= t.end_lr_fraction <= 1, f"train.end_lr_fraction={t.end_lr_fraction} must be in [0, 1]")
    check(t.time_budget_s >= 0, f"train.time_budget_s={t.time_budget_s} must be >= 0 (0: no budget)")
    cooldown = t.get("cooldown_steps", 0)
    check(0 <= cooldown <= t.steps - t.warmup_steps,
          f"train.cooldown_steps={cooldown} must be in [0, train.steps - train.warmup_steps = "
          f"{t.steps - t.warmup_steps}] (the cool-down follows the warm-up)")
    check(t.divergence_factor == 0 or t.divergence_factor > 1,
          f"train.divergence_factor={t.divergence_factor} must be 0 (off) or > 1")
    check(t.log_every >= 1 and t.checkpoint_every >= 1, "train.log_every and train.checkpoint_every must be >= 1")
    return errors


def evals_problems(evals) -> list[str]:
    """What is wrong with a `config.evals` section, each naming its field."""
    out = []
    for name in sorted(evals):
        spec = evals[name]
        kind = spec.get("type") if hasattr(spec, "get") else None
        if kind not in EVALUATORS:
            out.append(f"evals.{name}.type={kind!r}: known evaluators are {sorted(EVALUATORS)}")
            continue
        given, wanted = set(spec) - {"type", "every"}, set(EVALUATORS[kind])
        out += [f"evals.{name}.{f}: unknown field for a {kind!r} evaluator" for f in sorted(given - wanted)]
        out += [f"evals.{name}.{f}: missing (a {kind!r} evaluator needs it)" for f in sorted(wanted - given)]
        if not isinstance(spec.get("every"), int) or spec.get("every") < 0:
            out.append(f"evals.{name}.every={spec.get('every')!r} must be an integer >= 1, or 0 (off)")
        if "max_examples" in wanted and "max_examples" in given and spec.max_examples < 10:
            out.append(f"evals.{name}.max_examples={spec.max_examples} must be >= 10")
        if "feature" in wanted and "feature" in given and spec.feature not in IMAGE_FEATURES:
            out.append(f"evals.{name}.feature={spec.feature!r}: choose one of {IMAGE_FEATURES}")
    return out
