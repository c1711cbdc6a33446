"""The training core: dropout that runs, exact gradient accumulation, optimizer shardings from
logical axes, scan-over-layers and remat equal to the plain loop, checkpoints across layouts,
the VQ trainer's NaN guard, and config fields checked by name."""
import dataclasses
import functools
import json
import re
import time
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from gptface_jax.models.transformer import GPTFace, ModelConfig, stack_layers, unstack_layers
from gptface_jax.runtime import config_lib, optimizer, sharding
from gptface_jax.runtime.checkpoints import Checkpointer
from gptface_jax.train import train_loop, trainer
from tests.test_losses import CONFIG, _batch, _loss_fn


def _config(*overrides):
    mesh = () if any(o.startswith("mesh.shape=") for o in overrides) else ("mesh.shape=(8,1,1)",)
    return config_lib.load(["--config", "experiments/pretrain.py:tiny", "--config.loss.text_capacity=1.0",
                            "--config.loss.image_capacity=1.0", *(f"--config.{o}" for o in (*mesh, *overrides))])


def _init(model, batch):
    return nn.meta.unbox(model.init(jax.random.PRNGKey(0), batch["text_inputs"][:1], batch["image_inputs"][:1]))


def _state(model, tx, batch):
    params = _init(model, batch)
    return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}


@pytest.mark.slow
def test_dropout_runs_in_training_and_zero_dropout_is_the_deterministic_step():
    batch = {k: jnp.asarray(v) for k, v in _batch().items()}
    tx = optax.sgd(0.0)
    deterministic_loss = float(_loss_fn(GPTFace(CONFIG))(_init(GPTFace(CONFIG), batch), batch)[0])
    losses = {}
    for rate in (0.0, 0.5):
        model = GPTFace(dataclasses.replace(CONFIG, dropout=rate))
        step = jax.jit(trainer.make_train_step(model, tx, _config()))
        state = _state(model, tx, batch)
        _, first = step(state, batch)
        _, again = step(state, batch)
        _, later = step({**state, "step": state["step"] + 1}, batch)
        losses[rate] = float(first["loss"]), float(again["loss"]), float(later["loss"])
    assert losses[0.0] == (deterministic_loss,) * 3  # rate 0: exactly the deterministic forward pass
    first, again, later = losses[0.5]
    assert first == again  # the masks are a function of (seed, step): a resumed run draws the same
    assert abs(first - deterministic_loss) > 1e-3 and abs(later - first) > 1e-3


@pytest.mark.slow
def test_accumulated_step_equals_one_step_on_the_whole_batch():
    """MILM, ITM and ITC with mined negatives and the similarity term: under accumulation the
    contrastive batch, the mined rows and the match logits' similarities are still the whole
    batch's (GradCache), so the update is the whole-batch update."""
    batch = {k: jnp.asarray(v) for k, v in _batch(16).items()}
    model = GPTFace(dataclasses.replace(CONFIG, itc_dim=16, itm_similarity=True))
    align = ("model.itc_dim=16", "model.itm_similarity=True", "loss.itc_weight=1.0", "loss.mined_negative_fraction=0.5")
    # eps well above the gradient round-off, so Adam does not amplify summation-order noise
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2, eps=1e-4, weight_decay=0.01))
    whole_state, whole = jax.jit(trainer.make_train_step(model, tx, _config(*align)))(_state(model, tx, batch), batch)
    acc_state, acc = jax.jit(trainer.make_train_step(model, tx, _config("train.accum_steps=4", *align)))(
        _state(model, tx, batch), batch)
    assert float(whole["mined_negatives"]) > 0
    for key in ("loss", "text_loss", "image_loss", "itm_loss", "text_accuracy", "itm_accuracy", "grad_norm",
                "itc_loss", "itc_i2t_accuracy", "mined_negatives", "mined_similarity", "itm_similarity_gain"):
        np.testing.assert_allclose(float(acc[key]), float(whole[key]), rtol=2e-5, err_msg=key)
    for a, b in zip(jax.tree.leaves(acc_state), jax.tree.leaves(whole_state)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    assert int(acc_state["step"]) == 1  # one optimizer update, whatever the micro-batch count


def test_the_schedule_counts_optimizer_updates():
    train = _config("train.steps=40", "train.warmup_steps=4", "train.accum_steps=4").train
    schedule = optimizer.learning_rate_schedule(train)
    assert float(schedule(4)) == pytest.approx(train.learning_rate)  # warm-up ends at update 4, not 16
    assert float(schedule(40)) == pytest.approx(train.learning_rate * train.end_lr_fraction)
    assert float(schedule(20)) > float(schedule(39)) > float(schedule(40))


def test_the_cooldown_takes_the_rate_linearly_from_the_schedule_to_its_end_value():
    # the demo's case: a run stopped early on a longer schedule, its last 10 updates cooling down
    train = _config("train.steps=40", "train.warmup_steps=4", "train.schedule_steps=400",
                    "train.cooldown_steps=10").train
    schedule, end = optimizer.learning_rate_schedule(train), train.learning_rate * train.end_lr_fraction
    tx = optimizer.make_optimizer(_config("train.steps=40", "train.warmup_steps=4", "train.schedule_steps=400",
                                          "train.cooldown_steps=10"))
    params = {"w": jnp.ones((3,))}
    opt_state, rates = tx.init(params), []
    for _ in range(41):
        rates.append(float(optimizer.current_learning_rate(train, opt_state, len(rates))))
        _, opt_state = tx.update({"w": jnp.ones((3,))}, opt_state, params)
    assert rates[29] == pytest.approx(float(schedule(29))) and rates[30] == pytest.approx(float(schedule(30)))
    assert float(schedule(30)) > 0.99 * train.learning_rate  # the cosine has barely begun by update 30
    assert rates[35] == pytest.approx((float(schedule(30)) + end) / 2)
    assert rates[40] == pytest.approx(end)
    assert all(a > b for a, b in zip(rates[30:40], rates[31:41]))
    assert optimizer.cooldown_of({"opt_state": opt_state}) == (30, 10)
    # set at run time, with the leaves' dtypes kept (a compiled step takes the state unchanged)
    moved = optimizer.with_cooldown({"opt_state": opt_state}, 12, 5)
    assert optimizer.cooldown_of(moved) == (12, 5)
    assert jax.tree.map(lambda a: a.dtype, moved) == jax.tree.map(lambda a: a.dtype, {"opt_state": opt_state})


def test_the_optimizer_without_a_cooldown_is_optax_adamw():
    config = _config("train.steps=20", "train.warmup_steps=3", "train.weight_decay=0.1")
    t = config.train
    reference = optax.chain(optax.clip_by_global_norm(t.grad_clip),
                            optax.adamw(optimizer.learning_rate_schedule(t), b1=t.b1, b2=t.b2,
                                        weight_decay=t.weight_decay))
    ours = optimizer.make_optimizer(config)
    params = {"w": jax.random.normal(jax.random.PRNGKey(0), (4, 5))}
    a, b = params, params
    sa, sb = reference.init(a), ours.init(b)
    for i in range(20):
        g = {"w": jax.random.normal(jax.random.PRNGKey(i + 1), (4, 5))}
        ua, sa = reference.update(g, sa, a)
        ub, sb = ours.update(g, sb, b)
        a, b = optax.apply_updates(a, ua), optax.apply_updates(b, ub)
    np.testing.assert_allclose(np.asarray(b["w"]), np.asarray(a["w"]), rtol=1e-6, atol=1e-7)


def test_a_checkpoint_of_the_older_optimizer_layout_is_refused_by_name_and_resumed_by_the_trainers(tmp_path):
    """Not a damaged checkpoint: nothing is moved aside, the error names the differing leaves, and the
    trainers' restore (pre-training's, and the VQ's with its critic's optimizer beside) continues it with
    the same moments and counts."""
    from gptface_jax.runtime.checkpoints import CheckpointMismatch, abstract_like
    config = _config("train.steps=10", "train.warmup_steps=1", "train.weight_decay=0.1")
    older, ours = optimizer.adamw_layout(config.train), optimizer.make_optimizer(config)
    grads = [{"w": jax.random.normal(jax.random.PRNGKey(i), (4, 4))} for i in range(6)]

    def updates(tx, params, opt_state, batch):
        for g in batch:
            u, opt_state = tx.update(g, opt_state, params)
            params = optax.apply_updates(params, u)
        return params, opt_state

    params, critic = {"w": jnp.ones((4, 4))}, {"w": jnp.full((4, 4), 2.0)}
    saved_params, saved_opt = updates(older, params, older.init(params), grads[:3])
    saved_critic, saved_critic_opt = updates(older, critic, older.init(critic), grads[1:3])
    checkpointer = Checkpointer(str(tmp_path))
    for step in (2, 3):
        checkpointer.save(step, {"params": saved_params, "opt_state": saved_opt, "step": jnp.int32(step),
                                 "disc_params": saved_critic, "disc_opt_state": saved_critic_opt})
    checkpointer.wait()
    state = {"params": params, "opt_state": ours.init(params), "step": jnp.int32(0),
             "disc_params": critic, "disc_opt_state": ours.init(critic)}
    target = abstract_like(state, jax.sharding.SingleDeviceSharding(jax.devices()[0]))
    with pytest.raises(CheckpointMismatch, match=r"another layout(.|\n)*opt_state/3/cooldown_start: in this run's"):
        checkpointer.restore(target)
    assert sorted(checkpointer.manager.all_steps()) == [2, 3] and not (tmp_path / "checkpoints_unreadable").exists()
    restored, _ = train_loop.restore_state(checkpointer, target, config.train)
    assert int(restored["step"]) == 3 and optimizer.cooldown_of(restored) == (optimizer.NO_COOLDOWN, 0)
    assert int(restored["disc_opt_state"][3].schedule_count) == 2  # each optimizer keeps its own count
    for key, opt_key, start, batch in (("params", "opt_state", params, grads), ("disc_params", "disc_opt_state",
                                                                                  critic, grads[1:])):
        resumed, _ = updates(ours, restored[key], restored[opt_key], grads[3:])
        uninterrupted, _ = updates(older, start, older.init(start), batch)
        np.testing.assert_allclose(np.asarray(resumed["w"]), np.asarray(uninterrupted["w"]), rtol=1e-6, atol=1e-7)


def test_the_cooldown_is_planned_when_the_budget_runs_short():
    plan = functools.partial(train_loop.plan_cooldown, last_step=1600, budget=100.0, cooldown_steps=20)
    assert plan(10, elapsed=10.0, steps_run=10) is None       # 90 steps left of the budget: not yet
    assert plan(80, elapsed=80.0, steps_run=80) == 20         # 20 left: cool down over them
    assert plan(85, elapsed=95.0, steps_run=85) == 4          # slower than planned: what is left
    assert plan(99, elapsed=99.9, steps_run=99) == 1
    # the budget reaches the schedule's end: the configured cool-down stands
    assert train_loop.plan_cooldown(90, 100, 90.0, 90, 100.0, 20) is None
    assert train_loop.plan_cooldown(80, 1600, 80.0, 80, 0.0, 20) is None   # no budget
    assert train_loop.plan_cooldown(80, 1600, 80.0, 80, 100.0, 0) is None  # no cool-down asked for
    # a resumed run projects from its own steps only
    assert train_loop.plan_cooldown(1080, 1600, 80.0, 80, 100.0, 20) == 20


def test_optimizer_moments_get_their_parameters_shardings_when_shapes_collide():
    config = _config("mesh.shape=(2,2,2)", "model.width=64", "model.mlp_dim=64", "model.num_heads=4")
    model = GPTFace(ModelConfig.from_config(config))
    tx = optimizer.make_optimizer(config)
    mesh, rules = sharding.make_mesh(config), sharding.logical_rules(config)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        _, abstract, shardings = trainer.state_shardings(model, tx, mesh, rules)
    params = shardings["params"]["params"]["block_0"]
    # same shape (64, 64), different logical axes: a shape-matched moment would take the other's layout
    assert abstract["params"]["params"]["block_0"]["mlp_in"]["kernel"].shape == (64, 64)
    assert params["mlp_in"]["kernel"].spec != params["mlp_out"]["kernel"].spec
    flat = jax.tree_util.tree_flatten_with_path(shardings["params"])[0]
    param_specs = {jax.tree_util.keystr(p): s.spec for p, s in flat}
    moments = 0
    for path, s in jax.tree_util.tree_flatten_with_path(shardings["opt_state"])[0]:
        names = [getattr(k, "name", None) for k in path]
        if "mu" in names or "nu" in names:
            rest = path[names.index("mu" if "mu" in names else "nu") + 1:]
            assert s.spec == param_specs[jax.tree_util.keystr(rest)], jax.tree_util.keystr(path)
            moments += 1
    assert moments == 2 * len(param_specs)


@pytest.mark.slow
def test_scan_over_layers_and_remat_equal_the_loop():
    batch = {k: jnp.asarray(v) for k, v in _batch().items()}
    loop = GPTFace(CONFIG)
    params = _init(loop, batch)
    reference = jax.jit(jax.value_and_grad(lambda p: _loss_fn(loop)(p, batch)[0]))(params)
    # every policy once, each layout under remat (suite time: the loop without remat is the reference)
    for remat, scan in (("none", True), ("full", False), ("full", True), ("dots_saveable", True)):
        model = GPTFace(dataclasses.replace(CONFIG, remat=remat, scan_layers=scan))
        p = stack_layers(params) if scan else params
        assert jax.tree.structure(p) == jax.tree.structure(_init(model, batch))
        loss, grads = jax.jit(jax.value_and_grad(lambda q, model=model: _loss_fn(model)(q, batch)[0]))(p)
        np.testing.assert_allclose(float(loss), float(reference[0]), rtol=1e-6)
        for a, b in zip(jax.tree.leaves(unstack_layers(grads) if scan else grads), jax.tree.leaves(reference[1])):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("saved_scanned", [False, True])
def test_checkpoints_restore_across_layer_layouts(tmp_path, saved_scanned):
    batch = {k: jnp.asarray(v) for k, v in _batch().items()}
    tx = optax.adam(1e-3)
    loop_state = _state(GPTFace(CONFIG), tx, batch)
    loop_state = {**loop_state, "opt_state": tx.update(jax.tree.map(jnp.ones_like, loop_state["params"]),
                                                      loop_state["opt_state"])[1]}  # non-zero moments
    scanned_state = stack_layers(loop_state)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    checkpointer = Checkpointer(str(tmp_path), async_save=False)
    checkpointer.save(1, scanned_state if saved_scanned else loop_state)
    for want in (loop_state, scanned_state):
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), want)
        restored, _ = checkpointer.restore(target)
        assert jax.tree.structure(restored) == jax.tree.structure(want)
        for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(want)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    checkpointer.close()
    for want in (loop_state, scanned_state):  # parameters alone, as inference and export restore them
        reader = Checkpointer(str(tmp_path), async_save=False)
        params = reader.restore_part({"params": want["params"]}, device)["params"]
        reader.close()
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(want["params"])):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _restore_everything(workdir):
    """The kept checkpoint's whole state as saved (parameters, optimizer state, step)."""
    manager = ocp.CheckpointManager(str(workdir / "checkpoints"))
    step = manager.latest_step()
    state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    manager.close()
    return step, state


@pytest.mark.slow
def test_vq_trainer_stops_on_nan_and_keeps_a_finite_checkpoint(tmp_path):
    from gptface_jax.train import vq_train
    args = ["--config", "experiments/vq.py:tiny", "--config.data.image_size=32", "--config.data.num_train=32",
            "--config.data.num_test=16", "--config.vq.codebook_size=16", "--config.vq.code_dim=8",
            "--config.vq.channels=(8,16)", "--config.train.batch_size=16", "--config.train.steps=30",
            "--config.train.warmup_steps=0", "--config.train.learning_rate=1e12", "--config.train.grad_clip=1e12",
            "--config.train.checkpoint_every=1", "--config.train.log_every=1", "--config.train.time_budget_s=0",
            "--config.train.divergence_factor=0"]  # the NaN guard alone
    config = vq_train.validate(config_lib.load(args), jax.device_count())
    with pytest.raises(train_loop.NonFiniteLoss, match="non-finite metrics at step"):
        vq_train.train(config, str(tmp_path))
    step, state = _restore_everything(tmp_path)
    assert step is not None and int(state["step"]) == step
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(state))


class _NoBatches:
    def __next__(self):
        return None

    def get_state(self):
        return b""


class _SavedSteps:
    def __init__(self):
        self.saved, self.seconds = [], {}

    def latest_step(self):
        return self.saved[-1] if self.saved else None

    def save(self, step, state, data_state, force=False, train_seconds=None):
        self.saved.append(step)
        self.seconds[step] = train_seconds

    def train_seconds(self, step):
        return self.seconds.get(step) or 0.0


def _slow_step(tx=None):
    """A jitted step of a few ms of matrix products (and, with `tx`, one optimizer update of "w")."""
    @jax.jit
    def step_fn(state, batch):
        x = jax.lax.fori_loop(0, 24, lambda i, x: jnp.tanh(x @ state["w"]), state["x"])
        new = {**state, "x": x, "step": state["step"] + 1}
        if tx is not None:
            updates, new["opt_state"] = tx.update({"w": x[: len(state["w"])]}, state["opt_state"], {"w": state["w"]})
            new["w"] = state["w"] + updates["w"]
        new["params"] = new["w"]
        return new, {"loss": x.mean()}

    key = jax.random.PRNGKey(0)
    state = {"x": jax.random.normal(key, (384, 384)), "w": jax.random.normal(key, (384, 384)) / 20,
             "step": jnp.int32(0)}
    state["params"] = state["w"]
    if tx is not None:
        state["opt_state"] = tx.init({"w": state["w"]})
    jax.block_until_ready(step_fn(state, None))  # compiled
    started = time.perf_counter()
    jax.block_until_ready(step_fn(state, None))
    return step_fn, state, time.perf_counter() - started


def _run(step_fn, state, train, checkpointer=None):
    writer = types.SimpleNamespace(write=lambda step, values: None)
    return train_loop.run(step_fn, state, _NoBatches(), lambda b: b, train, checkpointer or _SavedSteps(), writer,
                          train_loop.Throughput(flops=1.0, xla_flops=1.0, samples=1), primary=False)


def test_the_time_budget_counts_finished_steps_not_dispatched_ones():
    """A step the device has not finished must not count against the budget: with asynchronous
    dispatch the host would otherwise queue steps ahead (about 30 on the CPU client), all of which
    would still run after the budget was spent."""
    step_fn, state, step_time = _slow_step()
    budget = 20 * step_time
    train = types.SimpleNamespace(steps=100_000, checkpoint_every=10**9, log_every=10**9, time_budget_s=budget,
                                  divergence_factor=0.0)
    started = time.perf_counter()
    final, step, _ = _run(step_fn, state, train)
    jax.block_until_ready(final)
    elapsed = time.perf_counter() - started
    assert int(final["step"]) == step
    # the work done past the budget, in steps as they ran here (whatever the machine's load)
    overrun = (elapsed - budget) / (elapsed / step)
    assert overrun <= 4, f"{overrun:.1f} steps ran past the budget ({step} steps in {elapsed:.2f} s)"


def test_a_resumed_run_counts_its_budget_on_from_the_time_its_checkpoint_saved():
    step_fn, state, step_time = _slow_step()
    train = types.SimpleNamespace(steps=15, checkpoint_every=5, log_every=10**9, time_budget_s=0.0,
                                  divergence_factor=0.0)
    saved = _SavedSteps()
    first, step, _ = _run(step_fn, state, train, saved)
    assert step == 15 and saved.seconds[5] < saved.seconds[10] < saved.seconds[15]
    # resumed with a budget of 10 more steps' time: it ends near there, not 30 steps on
    train.steps, train.time_budget_s = 100_000, saved.seconds[15] + 10 * step_time
    started = time.perf_counter()
    final, step, _ = _run(step_fn, first, train, saved)
    jax.block_until_ready(final)
    elapsed = time.perf_counter() - started
    overrun = (saved.seconds[15] + elapsed - train.time_budget_s) / (elapsed / (step - 15))
    assert overrun <= 4, f"{overrun:.1f} steps ran past the budget ({step - 15} steps resumed in {elapsed:.2f} s)"
    assert saved.seconds[step] > saved.seconds[15]  # the final checkpoint counts on
    # resumed once the budget is spent: nothing more is trained, nothing is saved
    assert _run(step_fn, final, train, saved)[1] == step and saved.saved[-1] == step


def test_a_checkpoint_carries_its_training_time(tmp_path):
    from gptface_jax.runtime.checkpoints import abstract_like
    checkpointer = Checkpointer(str(tmp_path), async_save=False)
    checkpointer.save(3, {"w": jnp.ones((2,)), "step": jnp.int32(3)})  # written before the time was recorded
    checkpointer.save(4, {"w": jnp.ones((2,)), "step": jnp.int32(4)}, {"position": 1}, train_seconds=12.5)
    assert checkpointer.train_seconds(3) == 0.0 and checkpointer.train_seconds(4) == 12.5
    assert checkpointer.train_seconds(None) == 0.0 and checkpointer.train_seconds(7) == 0.0
    for item in (tmp_path / "checkpoints" / "4" / "progress").iterdir():  # damaged: counted from 0, said so
        item.write_text("{not json")
    assert Checkpointer(str(tmp_path)).train_seconds(4) == 0.0
    fresh = {"w": jnp.ones((2,)), "step": jnp.int32(0)}
    target = abstract_like(fresh, jax.sharding.SingleDeviceSharding(jax.devices()[0]))
    restored, data_state = checkpointer.restore(target)
    assert int(restored["step"]) == 4 and data_state == {"position": 1}


def test_a_budget_that_runs_short_ends_the_run_cooled_down():
    config = _config("train.steps=100000", "train.warmup_steps=2", "train.cooldown_steps=10",
                     "train.checkpoint_every=1000000000", "train.log_every=1000000000", "train.divergence_factor=0")
    train = config.train
    step_fn, state, step_time = _slow_step(optimizer.make_optimizer(config))
    train.time_budget_s = 40 * step_time
    final, step, _ = _run(step_fn, state, train)
    start, length = optimizer.cooldown_of(final)
    # the cool-down was brought forward from step 99,990 and the run ended with it, at the end rate
    assert 0 < start < step == start + length and length <= 10
    assert float(optimizer.current_learning_rate(train, final["opt_state"], step)) == pytest.approx(
        train.learning_rate * train.end_lr_fraction)
    # the same state run on (a resume): its cool-down is done, so it trains nothing more
    assert _run(step_fn, final, train)[1] == step


def test_unknown_or_retired_config_fields_are_refused_by_name():
    config = _config()
    with config.unlocked():
        config.model.param_dtype = "float32"  # retired: nothing reads it
        config.train.warmup_fraction = 0.1
    with pytest.raises(config_lib.ConfigError) as e:
        config_lib.validate(config)
    assert "model.param_dtype: unknown config field" in str(e.value)
    assert "train.warmup_fraction: unknown config field" in str(e.value)
    config = _config()
    with config.unlocked():
        config.evals.probe.type = "linear"
        config.evals.itm.max_exmples = 10
    with pytest.raises(config_lib.ConfigError) as e:
        config_lib.validate(config)
    assert "evals.probe.type='linear'" in str(e.value) and "evals.itm.max_exmples: unknown field" in str(e.value)
    config = _config("evals.probe.feature=pooled")
    with pytest.raises(config_lib.ConfigError, match=r"evals.probe.feature='pooled': choose one of"):
        config_lib.validate(config)
    with pytest.raises(config_lib.ConfigError, match="train.grad_clip=-1.0 must be > 0"):
        config_lib.validate(_config("train.grad_clip=-1.0"))


def test_every_config_field_is_read_by_the_library():
    """The experiment file's fields are the schema: each must be read somewhere (by name), or go."""
    import pathlib
    root = pathlib.Path(__file__).resolve().parent.parent
    source = "\n".join(p.read_text() for d in ("gptface_jax", "data_pipelines") for p in (root / d).rglob("*.py"))
    for kind in ("pretrain", "vq"):
        for path in config_lib._paths(config_lib.reference_config(kind).to_dict()):
            leaf = path.split(".")[-1]
            if path in ("variant", "evals"):
                continue
            assert re.search(rf"\.{leaf}\b|\[[\"']{leaf}[\"']\]", source), f"{kind} config field {path} is never read"


@pytest.mark.parametrize("field,value", [("model.itm_agreement", True), ("loss.swap_negative_fraction", 0.5),
                                         ("curriculum.salient_steps", 100)])
def test_a_run_trained_with_a_retired_mechanism_is_refused_by_name(field, value):
    old = _config().to_dict()
    old.setdefault("curriculum", {})
    section, leaf = field.split(".")
    old[section][leaf] = value
    message = re.escape(f"{field}={value!r}") + ".*" + re.escape(config_lib.RETIRED_AT)
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.upgrade(old)
    old[section][leaf] = config_lib.RETIRED_MECHANISMS[field]   # present but off: dropped, loads
    config_lib.validate(config_lib.upgrade(old))


def test_a_config_json_written_by_an_earlier_commit_loads():
    """Run q4's config.json, as commit c4091c8 wrote it: every field added since has its ADDED_FIELDS value."""
    import pathlib
    raw = json.loads((pathlib.Path(__file__).parent / "data" / "pretrain_config_c4091c8.json").read_text())
    config = config_lib.upgrade(raw)
    config_lib.validate(config)
    assert config.train.schedule_steps == 0 and config.train.steps == raw["train"]["steps"]


def test_old_workdir_configs_are_upgraded_in_one_place():
    old = _config().to_dict()
    old["eval"] = {"every": 7, "max_examples": 50}
    del old["evals"], old["model"]["remat"], old["train"]["b2"]
    old["model"]["param_dtype"] = "float32"
    old["mesh"]["logical_rules"] = [r for r in old["mesh"]["logical_rules"] if r[0] != "layers"]
    config = config_lib.upgrade(old)
    assert config.evals.to_dict() == {"itm": {"type": "itm", "every": 7, "max_examples": 50}}
    assert (config.model.remat, config.train.b2) == ("none", 0.98)
    assert "param_dtype" not in config.model and ("layers", None) in [tuple(r) for r in config.mesh.logical_rules]
    config_lib.validate(config)
