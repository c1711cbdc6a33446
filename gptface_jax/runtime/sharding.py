"""Meshes, logical-axis rules and host batches -> global arrays.

All parallelism is configuration: `config.mesh.axes` names the mesh axes ('data', 'fsdp',
'tensor'), `config.mesh.shape` sizes them (-1: the remaining devices), and
`config.mesh.logical_rules` maps the logical names that parameters and activations carry onto them.
Axis types are Auto: jax 0.10's make_mesh defaults to Explicit, which logical-rule sharding
does not use.
"""
from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gptface_jax.runtime.config_lib import resolve_mesh_shape


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, auto: bool = False) -> None:
    """Joins a multi-process run before any JAX computation.

    Explicit arguments serve hand-launched processes (e.g. two CPU processes on localhost);
    `auto` lets JAX detect TPU pods, SLURM and Open MPI. Neither: a single-process run.
    """
    if coordinator_address or num_processes is not None or process_id is not None:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    elif auto:
        jax.distributed.initialize()


def make_mesh(config, devices=None) -> Mesh:
    devices = list(devices if devices is not None else jax.devices())
    shape = resolve_mesh_shape(config, len(devices))
    if math.prod(shape) != len(devices):
        raise ValueError(f"mesh.shape={tuple(config.mesh.shape)} resolves to {shape}, which does not use "
                         f"the {len(devices)} devices present")
    return jax.make_mesh(shape, tuple(config.mesh.axes), axis_types=(AxisType.Auto,) * len(shape), devices=devices)


def logical_rules(config) -> tuple[tuple[str, object], ...]:
    return tuple((name, tuple(t) if isinstance(t, (list, tuple)) else t) for name, t in config.mesh.logical_rules)


def batch_spec(config) -> P:
    """PartitionSpec of a batch's leading axis (the 'batch' logical axis)."""
    target = dict(logical_rules(config)).get("batch")
    return P(target)


def batch_sharding(mesh: Mesh, config) -> NamedSharding:
    return NamedSharding(mesh, batch_spec(config))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def to_global(batch: dict, mesh: Mesh, config) -> dict:
    """This process's slice of a batch -> global jax.Arrays sharded on the batch axis.

    Every process passes its own rows (grain already sliced the data per process).
    """
    def put(x):
        x = np.asarray(x)
        spec = P(*batch_spec(config), *([None] * (x.ndim - 1)))
        return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), x)

    return {k: put(v) for k, v in batch.items() if np.asarray(v).dtype.kind in "biuf"}


def run_in_batches(fn, arrays: list[np.ndarray], batch_size: int, put=None):
    """`fn(*batch)` over fixed-size batches of rows, so `fn` compiles once; outputs cut back to the rows.

    The last batch is padded with copies of row 0. `put` (optional) turns each host batch (a list of
    arrays) into what `fn` takes, e.g. `global_batch_put`. Each output leaf is concatenated over
    the batches.
    """
    n = len(arrays[0])
    pad = -n % batch_size
    padded = [np.concatenate([a, np.repeat(a[:1], pad, 0)]) for a in arrays]
    outs = []
    for start in range(0, n + pad, batch_size):
        batch = [a[start:start + batch_size] for a in padded]
        outs.append(jax.device_get(fn(*(put(batch) if put else batch))))
    return jax.tree.map(lambda *parts: np.concatenate([np.asarray(p) for p in parts])[:n], *outs)


def global_batch_put(mesh: Mesh, config):
    """A `put` for `run_in_batches` when every process holds the same full arrays: this process's
    block of each batch's rows -> global arrays sharded on the batch axis."""
    def put(batch):
        local = len(batch[0]) // jax.process_count()
        lo = jax.process_index() * local
        arrays = to_global({str(i): a[lo:lo + local] for i, a in enumerate(batch)}, mesh, config)
        return [arrays[str(i)] for i in range(len(batch))]
    return put
