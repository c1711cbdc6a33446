"""The one optimizer builder: AdamW under a warmup + cosine schedule that may end in a linear cool-down,
with global-norm clipping.

Every number comes from `config.train` (pre-training, the VQ tokenizer and fine-tuning share it).
The schedule counts optimizer updates: with gradient accumulation inside the step, `train.steps`
updates end the cosine at `train.steps`, however many micro-batches each update sums.

The cool-down (warmup-stable-decay's decay phase, as in MiniCPM and "Scaling Laws and Compute-Optimal
Training Beyond Fixed Training Durations") takes the rate linearly from wherever the cosine stands to its
end value over `train.cooldown_steps` updates. Its start lives in the optimizer state, not the config:
a run stopped before its schedule ends (`train.schedule_steps` > `train.steps`) cools down over its last
updates, and a wall-clock budget moves the start earlier at run time (train_loop.plan_cooldown) so that
the run still ends cooled down. Saved with the state, it resumes exactly.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

NO_COOLDOWN = 2**31 - 1  # cooldown_start of a schedule that runs its cosine to the end


class CooldownState(NamedTuple):
    schedule_count: jax.Array   # optimizer updates so far (int32)
    cooldown_start: jax.Array   # the update where the linear cool-down begins (int32; NO_COOLDOWN: none)
    cooldown_steps: jax.Array   # its length in updates (int32)


def learning_rate_schedule(train) -> optax.Schedule:
    """Linear warm-up, then a cosine to end_lr_fraction over the schedule's horizon: train.schedule_steps
    where a config sets it (a run that stops early on a longer run's schedule; MaxText's
    learning_rate_schedule_steps), else train.steps. The cool-down, if any, bends its tail (learning_rate)."""
    warmup = max(train.warmup_steps, 1)
    horizon = train.get("schedule_steps", 0) or train.steps
    return optax.warmup_cosine_decay_schedule(0.0, train.learning_rate, warmup, max(horizon, warmup + 1),
                                              end_value=train.learning_rate * train.end_lr_fraction)


def configured_cooldown(train) -> tuple[int, int]:
    """(start, length) of the cool-down the config asks for: the last train.cooldown_steps updates."""
    steps = train.get("cooldown_steps", 0)
    return (train.steps - steps, steps) if steps else (NO_COOLDOWN, 0)


def learning_rate(train, count, cooldown_start, cooldown_steps):
    """The rate at update `count`: the schedule until cooldown_start, then linearly from the schedule's
    value there to its end value over cooldown_steps updates."""
    schedule = learning_rate_schedule(train)
    end = train.learning_rate * train.end_lr_fraction
    start = jnp.minimum(cooldown_start, count)  # the schedule is only read where it has been reached
    at_start = schedule(start)
    progress = jnp.clip((count - cooldown_start) / jnp.maximum(cooldown_steps, 1), 0.0, 1.0)
    return jnp.where(count < cooldown_start, schedule(count), at_start + (end - at_start) * progress)


def scale_by_cooled_schedule(train) -> optax.GradientTransformation:
    """optax.scale_by_learning_rate for `learning_rate`, its cool-down held in the state."""
    start, steps = configured_cooldown(train)

    def init_fn(params):
        del params
        return CooldownState(jnp.zeros((), jnp.int32), jnp.asarray(start, jnp.int32), jnp.asarray(steps, jnp.int32))

    def update_fn(updates, state, params=None):
        del params
        rate = learning_rate(train, state.schedule_count, state.cooldown_start, state.cooldown_steps)
        updates = jax.tree.map(lambda u: (-rate * u).astype(u.dtype), updates)
        return updates, state._replace(schedule_count=optax.safe_increment(state.schedule_count))

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(config) -> optax.GradientTransformation:
    """Clipping, then optax.adamw's own chain (Adam moments, decoupled weight decay, the rate)."""
    t = config.train
    return optax.chain(optax.clip_by_global_norm(t.grad_clip),
                       optax.scale_by_adam(b1=t.b1, b2=t.b2),
                       optax.add_decayed_weights(t.weight_decay),
                       scale_by_cooled_schedule(t))


def adamw_layout(train) -> optax.GradientTransformation:
    """The optimizer as checkpoints before commit 9d07184 hold it: optax.adamw after the clip, the rate's
    count in optax's own schedule state (what from_adamw_layout converts)."""
    return optax.chain(optax.clip_by_global_norm(train.grad_clip),
                       optax.adamw(learning_rate_schedule(train), b1=train.b1, b2=train.b2,
                                   weight_decay=train.weight_decay))


def adamw_layout_of(opt_state):
    """adamw_layout's state (or abstract state) holding make_optimizer's moments and counts."""
    clip, adam, decay, cooled = opt_state
    return clip, (adam, decay, optax.ScaleByScheduleState(count=cooled.schedule_count))


def from_adamw_layout(opt_state, train):
    """An adamw_layout state in make_optimizer's layout: the same moments and counts, and the cool-down
    the config asks for (placed as the count is)."""
    clip, (adam, decay, schedule) = opt_state
    start, steps = configured_cooldown(train)
    def like_count(value):
        return jax.device_put(jnp.asarray(value, jnp.int32), schedule.count.sharding)
    return clip, adam, decay, CooldownState(schedule.count, like_count(start), like_count(steps))


def _cooldown_leaves(state):
    return [(path[-1].name, leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]
            if getattr(path[-1], "name", None) in ("cooldown_start", "cooldown_steps")]


def cooldown_of(state) -> tuple[int, int] | None:
    """(start, length) of the cool-down a training state holds (None: an optimizer without one)."""
    leaves = dict(_cooldown_leaves(state))
    if not leaves:
        return None
    return int(jax.device_get(leaves["cooldown_start"])), int(jax.device_get(leaves["cooldown_steps"]))


def with_cooldown(state, start: int, steps: int):
    """`state` with every optimizer's cool-down (a GAN's two optimizers cool down together) set to begin
    at update `start` and last `steps` updates; each value keeps its leaf's dtype and sharding, so a
    compiled step takes the new state as it took the old."""
    values = {"cooldown_start": start, "cooldown_steps": steps}

    def put(path, leaf):
        name = getattr(path[-1], "name", None)
        if name not in values:
            return leaf
        return jax.device_put(jnp.asarray(values[name], leaf.dtype), leaf.sharding)

    return jax.tree_util.tree_map_with_path(put, state)


def current_learning_rate(train, opt_state, step):
    """The rate the next update from `opt_state`, the `step`-th, uses (the logged `learning_rate`); the
    config's schedule for an optimizer built elsewhere (tests pass their own)."""
    held = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, CooldownState))
            if isinstance(s, CooldownState)]
    if not held:
        return learning_rate_schedule(train)(step)
    return learning_rate(train, held[0].schedule_count, held[0].cooldown_start, held[0].cooldown_steps)
