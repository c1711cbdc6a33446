"""The one optimizer builder: AdamW under a warmup + cosine schedule, with global-norm clipping.

Every number comes from `config.train` (pre-training, the VQ tokenizer and fine-tuning share it).
The schedule counts optimizer updates: with gradient accumulation inside the step, `train.steps`
updates end the cosine at `train.steps`, however many micro-batches each update sums.
"""
from __future__ import annotations

import optax


def learning_rate_schedule(train) -> optax.Schedule:
    """Linear warm-up, then a cosine to end_lr_fraction over the schedule's horizon: train.schedule_steps
    where a config sets it (a run that stops early on a longer run's schedule; MaxText's
    learning_rate_schedule_steps), else train.steps."""
    warmup = max(train.warmup_steps, 1)
    horizon = train.get("schedule_steps", 0) or train.steps
    return optax.warmup_cosine_decay_schedule(0.0, train.learning_rate, warmup, max(horizon, warmup + 1),
                                              end_value=train.learning_rate * train.end_lr_fraction)


def make_optimizer(config) -> optax.GradientTransformation:
    t = config.train
    return optax.chain(optax.clip_by_global_norm(t.grad_clip),
                       optax.adamw(learning_rate_schedule(t), b1=t.b1, b2=t.b2, weight_decay=t.weight_decay))
