"""The one training loop, shared by pre-training and the VQ tokenizer.

    state, step, metrics = train_loop.run(step_fn, state, batches, config.train, checkpointer, writer, ...)

Per step: one batch, one compiled step. Every `log_every` steps (and on checkpoint steps and the
last step) the metrics are fetched, checked finite (the NaN/Inf guard: a bad step is never saved,
so the last checkpoint is the last good state) and written with throughput over the window since
the last log. The divergence guard (`train.divergence_factor` k, 0: off) stops the run, also before a
save, when the logged loss exceeds k x the median of the run's recent logged losses or the
parameter norm exceeds k x its value at the start: finite but exploding weights are never kept
either. Evaluators run at their own cadence; checkpoints carry the input pipeline's state; a
wall-clock budget (`train.time_budget_s`, 0: none) may end the run early; the final state is
always saved. The budget counts the training time of the run's whole trajectory: each checkpoint
carries the wall time that led to it, and a resumed run counts on from there (time spent past the
last checkpoint of an interrupted run is redone, and counted once).

A budget that will stop the run before `train.steps` brings its learning-rate cool-down forward
(`train.cooldown_steps`, gptface_jax/runtime/optimizer.py): once the steps the budget still allows, at
this run's mean step time, are no more than the cool-down's length, the cool-down starts and the run
ends with it, so a slow machine ends a budgeted run at the schedule's end rate rather than mid-schedule.
From then on the budget no longer stops the run: it ends as the projection said, give or take the
projection's error.
A run whose cool-down has begun ends with it (resuming a finished one trains nothing); before that,
the config's cool-down applies, so a resumed run may be given more steps.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator

import jax
import optax
from tqdm import tqdm

from gptface_jax.evals.evaluators import Evaluator
from gptface_jax.runtime import optimizer
from gptface_jax.runtime.metrics import throughput


class NonFiniteLoss(RuntimeError):
    """Training produced NaN/Inf; the last good checkpoint is kept."""


class Diverged(NonFiniteLoss):
    """Training diverged (a loss spike or exploding weights) while still finite; the last good checkpoint is kept."""


@dataclasses.dataclass
class DivergenceGuard:
    """Flags a logged step whose loss or parameter norm has run away (see the module doc)."""
    factor: float
    start_param_norm: float
    window: int = 50
    min_history: int = 5
    losses: list = dataclasses.field(default_factory=list)

    def problem(self, loss: float | None, param_norm: float) -> str | None:
        if not self.factor:
            return None
        if param_norm > self.factor * self.start_param_norm:
            return (f"the parameter norm {param_norm:.4g} is over {self.factor:g}x its start "
                    f"{self.start_param_norm:.4g}")
        if loss is not None:
            recent = sorted(self.losses[-self.window:])
            if len(recent) >= self.min_history:
                median = recent[len(recent) // 2]
                if median > 0 and loss > self.factor * median:
                    return f"the loss {loss:.4g} is over {self.factor:g}x its recent median {median:.4g}"
            self.losses.append(loss)
        return None


@dataclasses.dataclass(frozen=True)
class Throughput:
    """What one step processes, for the logged rates."""
    flops: float                     # model FLOPs per step (analytic or XLA's)
    xla_flops: float                 # XLA's cost analysis of the compiled step
    samples: int
    tokens: int = 0
    sample_name: str = "samples"     # logged as <sample_name>_per_s


def plan_cooldown(step: int, last_step: int, elapsed: float, steps_run: int, budget: float,
                  cooldown_steps: int) -> int | None:
    """How many steps a cool-down starting after `step` should last for the run to end cooled down as
    its budget runs out; None while the budget still allows `last_step` or more than `cooldown_steps`.

    The steps left are projected from this run's mean step time so far, evaluations included, so the
    projection errs towards starting early."""
    if not (budget and cooldown_steps and steps_run):
        return None
    left = int((budget - elapsed) / (elapsed / steps_run))
    if step + left >= last_step or left > cooldown_steps:
        return None
    return max(left, 1)


def _last_step(train, cooldown: tuple[int, int] | None) -> int:
    if cooldown is None or cooldown[0] == optimizer.NO_COOLDOWN:
        return train.steps
    return min(train.steps, cooldown[0] + cooldown[1])


def restore_state(checkpointer, target: dict, train) -> tuple[dict, dict | None]:
    """The newest checkpoint restored into `target`. One whose optimizer states (each `*opt_state` entry:
    a GAN's critic has its own) have the layout before the cool-down (optimizer.adamw_layout) continues with
    the same moments and counts; any other layout raises CheckpointMismatch, and an unreadable checkpoint
    goes to the checkpointer's move-aside path."""
    step = checkpointer.latest_step()
    optimizer_keys = [k for k in target if k.endswith("opt_state")]
    older = {**target, **{k: optimizer.adamw_layout_of(target[k]) for k in optimizer_keys}}
    try:
        converts = bool(checkpointer.layout_problems(target, step)) and not checkpointer.layout_problems(older, step)
    except Exception:  # unreadable metadata: restore() moves the checkpoint aside and says so
        converts = False
    if not converts:
        return checkpointer.restore(target)
    state, data_state = checkpointer.restore(older, step=step)
    return {**state, **{k: optimizer.from_adamw_layout(state[k], train) for k in optimizer_keys}}, data_state


def run(step_fn, state: dict, data_iter: Iterator, to_device: Callable, train, checkpointer, writer,
        rates: Throughput, evaluators: tuple[Evaluator, ...] = (), desc: str = "train",
        postfix: Callable[[dict], dict] = lambda m: {}, primary: bool = True):
    """Steps `state` from its own `state['step']` to `train.steps`, or to the end of its cool-down;
    returns (state, step, last metrics)."""
    step = int(state["step"])
    budget = train.time_budget_s
    spent = checkpointer.train_seconds(step)  # by the runs before this one, to the state resumed
    cooldown = optimizer.cooldown_of(state)  # None: an optimizer without a cool-down
    if cooldown is not None and cooldown[0] > step and cooldown != optimizer.configured_cooldown(train):
        cooldown = optimizer.configured_cooldown(train)  # not begun: this config's cool-down applies
        state = optimizer.with_cooldown(state, *cooldown)
    def cooling_down():  # a cool-down has begun: it ends the run
        return cooldown is not None and step >= cooldown[0]
    last = _last_step(train, cooldown)
    if budget and spent >= budget and not cooling_down():
        last = step  # trains nothing; the final state is the one resumed
        if primary:
            print(f"the time budget of {budget:.0f} s was spent by step {step} ({spent:.0f} s of training): "
                  f"raise train.time_budget_s (0: none) to train on", flush=True)
    started = window_start = time.perf_counter()
    def train_seconds():
        return spent + time.perf_counter() - started
    window_steps, steps_run, metrics = 0, 0, {}
    guard = DivergenceGuard(train.divergence_factor, _norm(state["params"]))
    bar = tqdm(total=last, initial=step, desc=desc, unit="step", mininterval=5, disable=not primary)
    in_flight = None
    while step < last:
        new_state, metrics = step_fn(state, to_device(next(data_iter)))
        step += 1
        steps_run += 1
        window_steps += 1
        bar.update(1)
        saving = step % train.checkpoint_every == 0
        if budget:
            # Dispatch is asynchronous: the host can queue steps ahead of the device (about 30 on the
            # CPU client, at most a logging window), and a clock read then says nothing of the work done.
            # Waiting for the previous step keeps one step in flight, so the budget is overrun by at
            # most about one step.
            if in_flight is not None:
                jax.block_until_ready(in_flight)
            in_flight = metrics
        if budget and cooldown is not None and not cooling_down() and steps_run > 1:
            # the clock has seen steps_run - 1 steps finish (the last one is still in flight)
            length = plan_cooldown(step, last, time.perf_counter() - started, steps_run - 1, budget - spent,
                                   train.cooldown_steps)
            if length:
                new_state = optimizer.with_cooldown(new_state, step, length)
                cooldown, last = (step, length), step + length
                bar.total = last
                if primary:
                    print(f"the time budget ends near step {last}: cooling down over its last {length} steps",
                          flush=True)
        # a run cooling down ends with its cool-down, fitted to the budget when it was planned
        out_of_time = bool(budget) and not cooling_down() and train_seconds() > budget
        if saving or out_of_time or step % train.log_every == 0 or step == last:
            metrics = jax.device_get(metrics)
            check_finite(metrics, step, checkpointer)
            check_divergence(guard, metrics, new_state, step, checkpointer)
            elapsed = time.perf_counter() - window_start
            logged = throughput(rates.flops, elapsed / window_steps, jax.device_count())
            logged["xla_tflops_per_device"] = rates.xla_flops * window_steps / elapsed / jax.device_count() / 1e12
            logged[f"{rates.sample_name}_per_s"] = window_steps * rates.samples / elapsed
            if rates.tokens:
                logged["tokens_per_s"] = window_steps * rates.tokens / elapsed
            writer.write(step, {**metrics, **logged})
            bar.set_postfix(postfix(metrics))
            window_start, window_steps = time.perf_counter(), 0
        state = new_state
        for evaluator in evaluators:
            if step % evaluator.every == 0 and step != last:
                writer.write(step, evaluator.run(state["params"]))
        if saving:  # metrics were checked finite just above
            checkpointer.save(step, state, data_iter.get_state(), train_seconds=train_seconds())
        if out_of_time:
            print(f"time budget of {budget:.0f} s spent at step {step}", flush=True)
            break
    bar.close()
    if checkpointer.latest_step() != step:
        checkpointer.save(step, state, data_iter.get_state(), force=True, train_seconds=train_seconds())
    return state, step, metrics


def check_finite(metrics: dict, step: int, checkpointer) -> None:
    if all(math.isfinite(float(v)) for v in metrics.values()):
        return
    checkpointer.close()
    raise NonFiniteLoss(f"non-finite metrics at step {step}: { {k: float(v) for k, v in metrics.items()} }; the last "
                        f"good checkpoint (step {checkpointer.latest_step()}) is kept in {checkpointer.directory}")


_tree_norm = jax.jit(optax.tree.norm)  # one compiled reduction over sharded leaves, not an eager op per leaf


def _norm(params) -> float:
    return float(jax.device_get(_tree_norm(params)))


def check_divergence(guard: DivergenceGuard, metrics: dict, state: dict, step: int, checkpointer) -> None:
    param_norm = float(metrics["param_norm"]) if "param_norm" in metrics else _norm(state["params"])
    problem = guard.problem(float(metrics["loss"]) if "loss" in metrics else None, param_norm)
    if problem is None:
        return
    checkpointer.close()
    raise Diverged(f"training diverged at step {step}: {problem} (train.divergence_factor="
                   f"{guard.factor:g}); the last good checkpoint (step {checkpointer.latest_step()}) is kept in "
                   f"{checkpointer.directory}")


def evaluate_all(evaluators: tuple[Evaluator, ...], params) -> dict:
    """Every evaluator once (the end of a run)."""
    scores = {}
    for evaluator in evaluators:
        scores.update(evaluator.run(params))
    return scores
