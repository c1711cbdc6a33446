"""orbax checkpoints of a train state together with the input pipeline's iterator state.

One CheckpointManager per workdir (<workdir>/checkpoints): async saves, keep-N, and the grain
iterator state stored as JSON in the same step, so a resumed run sees exactly the batches the
interrupted one would have, with the training wall time so far, so a resumed run's time budget counts
on. Restoring takes an abstract target (jax.ShapeDtypeStruct leaves with shardings), so a checkpoint
restores onto whatever mesh the new run built, and into either layer layout (a loop of blocks or
model.scan_layers' stacked blocks), whichever the checkpoint was written in.
"""
from __future__ import annotations

import os
import shutil

import jax
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from data_pipelines.errors import DataError
from gptface_jax.models.transformer import has_stacked_layers, stack_layers, unstack_layers
from gptface_jax.runtime import layout

PROGRESS = "progress"  # the checkpoint item holding the run's training wall time so far


class CheckpointMismatch(DataError):
    """A checkpoint that is not the run's: parameters missing, unused or of another shape, or a training
    state of another layout (an optimizer that keeps other statistics)."""


class Checkpointer:
    def __init__(self, workdir: str, keep: int = 3, async_save: bool = True):
        self.directory = os.path.abspath(os.path.join(workdir, layout.CHECKPOINTS))
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                 enable_async_checkpointing=async_save))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_state: dict | None = None, force: bool = False,
             train_seconds: float | None = None) -> bool:
        """`train_seconds`: the training wall time that led to this state, over every resume (what a
        resumed run's `train.time_budget_s` counts on from)."""
        items = {"state": ocp.args.StandardSave(state)}
        if data_state is not None:
            items["data"] = ocp.args.JsonSave(data_state)
        if train_seconds is not None:
            items[PROGRESS] = ocp.args.JsonSave({"train_seconds": float(train_seconds)})
        return self.manager.save(int(step), args=ocp.args.Composite(**items), force=force)

    def train_seconds(self, step: int | None) -> float:
        """The training wall time saved with checkpoint `step`; 0 where there is none (no checkpoint, or
        one written before it was recorded, commit 7c658ad and older)."""
        if step is None or step not in self.manager.all_steps():
            return 0.0
        try:
            if PROGRESS not in (self.manager.item_metadata(step) or {}):
                return 0.0
            restored = self.manager.restore(step, args=ocp.args.Composite(**{PROGRESS: ocp.args.JsonRestore()}))
            return float(restored[PROGRESS]["train_seconds"])
        except Exception as e:  # a damaged item costs the budget's memory, not the run
            print(f"the training time saved with checkpoint step {step} cannot be read ({type(e).__name__}); "
                  f"a time budget counts from this run's start", flush=True)
            return 0.0

    def restore(self, abstract_state, step: int | None = None, with_data: bool = True):
        """(state, data_state or None) at `step` (default: the newest readable one).

        The saved parameters must be the model's (CheckpointMismatch otherwise, never a fallback).
        Without `step`, a checkpoint that cannot be read (a damaged disk, a copy cut short) is moved
        aside to <workdir>/checkpoints_unreadable/ with one line saying so, and the next older one
        is restored.
        """
        if step is not None:
            return self._restore(abstract_state, step, with_data)
        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        for i, candidate in enumerate(steps):
            try:
                return self._restore(abstract_state, candidate, with_data)
            except CheckpointMismatch:
                raise
            except Exception as e:  # orbax / tensorstore errors of unreadable files have no common type
                if i + 1 == len(steps):
                    raise DataError(f"no readable checkpoint in {self.directory}; step {candidate}: "
                                    f"{type(e).__name__}: {str(e)[:300]}") from e
                aside = self._move_aside(candidate)
                reason = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:160]}"
                print(f"checkpoint step {candidate} cannot be read ({reason}); moved to {aside}, "
                      f"restoring step {steps[i + 1]}", flush=True)

    def _move_aside(self, step: int) -> str:
        target = os.path.join(os.path.dirname(self.directory), "checkpoints_unreadable", str(step))
        if jax.process_index() == 0:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.rmtree(target, ignore_errors=True)
            shutil.move(os.path.join(self.directory, str(step)), target)
        self.manager.reload()
        return target

    def _restore(self, abstract_state, step: int, with_data: bool):
        if "params" in abstract_state:
            self.check_params(abstract_state["params"], step)
        metadata = self.manager.item_metadata(step) or {}
        target, back = self._in_saved_layout(abstract_state, step)
        self.check_layout(target, step)
        items = {"state": ocp.args.StandardRestore(target)}
        if with_data and "data" in metadata:
            items["data"] = ocp.args.JsonRestore()
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return back(restored["state"]), restored.get("data") if with_data else None

    def saved_tree(self, step: int):
        """The saved state's tree of array metadata (shapes, dtypes), read from disk without restoring it."""
        from etils import epath
        return ocp.StandardCheckpointHandler().metadata(epath.Path(self.directory) / str(step) / "state")

    def param_mismatches(self, abstract_params, step: int | None = None) -> list[str]:
        """How the saved parameters differ from `abstract_params` (either layer layout), one line each:
        a parameter only in the checkpoint (restoring would silently drop it), only in the model, or
        of another shape. Empty when every saved parameter restores into the model and nothing is left over."""
        step = self.latest_step() if step is None else step
        target, _ = self._in_saved_layout({"params": abstract_params}, step)
        ours, saved = _shapes(target["params"]), _shapes(dict(self.saved_tree(step))["params"])
        return ([f"params{p}: in the checkpoint, not in the model" for p in sorted(saved.keys() - ours.keys())]
                + [f"params{p}: in the model, not in the checkpoint" for p in sorted(ours.keys() - saved.keys())]
                + [f"params{p}: shape {saved[p]} in the checkpoint, {ours[p]} in the model"
                   for p in sorted(saved.keys() & ours.keys()) if saved[p] != ours[p]])

    def check_params(self, abstract_params, step: int | None = None) -> None:
        """Raises CheckpointMismatch naming every difference `param_mismatches` finds."""
        problems = self.param_mismatches(abstract_params, step)
        if problems:
            shown = problems[:12] + ([f"... and {len(problems) - 12} more"] if len(problems) > 12 else [])
            raise CheckpointMismatch(
                f"the checkpoint in {self.directory} (step {self.latest_step() if step is None else step}) does not "
                "match the model the config builds (a changed shape or structure?):\n  - " + "\n  - ".join(shown))

    def layout_problems(self, abstract, step: int) -> list[str]:
        """How the saved state's leaves differ from `abstract`'s (either layer layout), one line each."""
        target, _ = self._in_saved_layout(abstract, step)
        ours, saved = _leaf_names(target), _leaf_names(dict(self.saved_tree(step)))
        return ([f"{p}: in the checkpoint, not in this run's state" for p in sorted(saved - ours)]
                + [f"{p}: in this run's state, not in the checkpoint" for p in sorted(ours - saved)])

    def check_layout(self, target, step: int) -> None:
        """Raises CheckpointMismatch when the saved state's leaves are not `target`'s, naming them: a
        layout the run cannot continue from, never a damaged file to be moved aside."""
        problems = self.layout_problems(target, step)
        if not problems:
            return
        raise CheckpointMismatch(
            f"the checkpoint in {self.directory} (step {step}) holds a training state of another layout (written "
            "by another optimizer or version?); its parameters still load for evaluation and export, but "
            "training cannot resume from it: train in a new workdir.\n  - " + "\n  - ".join(problems[:12]))

    def _in_saved_layout(self, abstract, step: int):
        """(restore target in the checkpoint's layer layout, function back to `abstract`'s layout)."""
        ours = has_stacked_layers(abstract)
        if has_stacked_layers(dict(self.saved_tree(step))) == ours:
            return abstract, lambda tree: tree
        if ours:  # a loop checkpoint into a scanned model
            target = unstack_layers(abstract, take=lambda a, i: _abstract(a, a.shape[1:], _drop_leading(a.sharding)))
            convert = stack_layers
        else:
            target = stack_layers(abstract, stack=lambda leaves: _abstract(
                leaves[0], (len(leaves), *leaves[0].shape), _add_leading(leaves[0].sharding)))
            convert = unstack_layers
        shardings = jax.tree.map(lambda a: a.sharding, abstract)
        return target, lambda tree: jax.device_put(convert(tree), shardings)

    def restore_part(self, abstract: dict, device, step: int | None = None) -> dict:
        """Only the leaves of `abstract` (e.g. {'params': ...}) from the saved state, onto one device.

        For inference and export: the optimizer state is never read.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        if "params" in abstract:
            self.check_params(abstract["params"], step)
        target, back = self._in_saved_layout(abstract_like(abstract, device), step)
        restore_args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=device), target)
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(item=target, restore_args=restore_args, partial_restore=True)))
        return back(restored["state"])

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_like(tree, sharding):
    """ShapeDtypeStructs of `tree`, all placed with `sharding` (a restore target)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def _shapes(tree) -> dict[str, tuple]:
    """{'[\'a\'][\'b\']': shape} of every array leaf (arrays, abstract arrays or orbax metadata)."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in flat}


def _leaf_names(tree) -> set[str]:
    """'opt_state/1/mu/params/w'-style names of every array leaf, alike for a live state (tuples,
    NamedTuples) and its saved metadata (lists, dicts); empty optimizer states have no leaves in either."""
    def name(key):
        for attr in ("name", "key", "idx"):
            if hasattr(key, attr):
                return str(getattr(key, attr))
        return str(key)
    return {"/".join(name(k) for k in path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _abstract(like, shape, sharding):
    return jax.ShapeDtypeStruct(shape, like.dtype, sharding=sharding)


def _add_leading(sharding):
    """The sharding of a stacked leaf: the layer axis replicated in front of the leaf's own spec."""
    if isinstance(sharding, NamedSharding):
        return NamedSharding(sharding.mesh, P(None, *sharding.spec))
    return sharding


def _drop_leading(sharding):
    if isinstance(sharding, NamedSharding):
        return NamedSharding(sharding.mesh, P(*tuple(sharding.spec)[1:]))
    return sharding
