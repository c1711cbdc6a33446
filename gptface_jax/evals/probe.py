"""Linear probes on frozen features: logistic regression per attribute, softmax regression for expression.

Protocol (written down in docs/evaluation.md, "Linear probes"): features are standardised with
the training split's mean and std; each probe is an L2-regularised linear model fitted full-batch
by L-BFGS to convergence (a convex problem, so the fit does not depend on a seed); the weight decay
is chosen per attribute (and once for expression) from `WEIGHT_DECAYS` by accuracy on the
validation split, then the probe is refitted on train + validation and scored once on test.
Labels of -1 (unknown) are left out of both fitting and scoring.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
MAX_ITERATIONS = 300


@dataclasses.dataclass(frozen=True)
class Split:
    features: np.ndarray        # (N, D) float32
    labels: np.ndarray          # (N, K) int for K binary attributes, or (N,) int classes; -1 unknown


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = train.mean(0), train.std(0) + 1e-6
    return [((x - mean) / std).astype(np.float32) for x in (train,) + others]


def _binary_loss(params, x, y, known, decay):
    logits = x @ params["w"] + params["b"]
    nll = optax.sigmoid_binary_cross_entropy(logits, y.astype(jnp.float32))
    data = jnp.where(known, nll, 0.0).sum(0) / jnp.maximum(known.sum(0), 1)
    return (data + decay * jnp.square(params["w"]).sum(0)).sum()  # separable: one problem per column


def _softmax_loss(params, x, y, known, decay):
    logits = x @ params["w"] + params["b"]
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(y, 0))
    return jnp.where(known, nll, 0.0).sum() / jnp.maximum(known.sum(), 1) + decay * jnp.square(params["w"]).sum()


@functools.partial(jax.jit, static_argnums=0)
def _lbfgs(kind: str, x, y, decay):
    """Minimises the probe loss from zero weights; `kind` 'binary' (one problem per column of y) or 'softmax'."""
    known = y >= 0
    if kind == "binary":
        outputs, fn = y.shape[1], lambda p: _binary_loss(p, x, y, known, decay)
    else:
        outputs, fn = decay.shape[0], lambda p: _softmax_loss(p, x, y, known, decay[0])
    params = {"w": jnp.zeros((x.shape[1], outputs)), "b": jnp.zeros((outputs,))}
    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fn)

    def body(carry):
        params, state, i = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=fn)
        return optax.apply_updates(params, updates), state, i + 1

    def running(carry):
        _, state, i = carry
        grad = optax.tree.get(state, "grad")
        return (i == 0) | ((i < MAX_ITERATIONS) & (optax.tree.norm(grad) > 1e-5))

    params, _, _ = jax.lax.while_loop(running, body, (params, solver.init(params), 0))
    return params


def _bucket(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def _fit(kind: str, x: np.ndarray, y: np.ndarray, decay: np.ndarray) -> dict:
    """`_lbfgs` on x and y padded to power-of-two rows and columns, so that the fits on train and on
    train + validation, and feature sets of nearby widths, share one compiled program. Padded rows
    are unknown labels (left out of the loss); padded columns are zero features, whose weights get
    only the decay's gradient and stay at zero: the fit is the unpadded one."""
    (n, d), rows = x.shape, _bucket(x.shape[0])
    padded_x = np.zeros((rows, _bucket(d)), np.float32)
    padded_x[:n, :d] = x
    padded_y = np.full((rows,) + y.shape[1:], -1, np.int32)
    padded_y[:n] = y
    params = jax.device_get(_lbfgs(kind, jnp.asarray(padded_x), jnp.asarray(padded_y), jnp.asarray(decay, jnp.float32)))
    return {"w": params["w"][:d], "b": params["b"]}


def fit_binary(x: np.ndarray, y: np.ndarray, decay: np.ndarray) -> dict:
    """Independent logistic regressions, one per column of y (N, K); `decay` (K,) per column."""
    return _fit("binary", x, y, decay)


def fit_softmax(x: np.ndarray, y: np.ndarray, decay: float, classes: int) -> dict:
    return _fit("softmax", x, y, np.full((classes,), decay, np.float32))


def binary_accuracy(params, x, y) -> np.ndarray:
    """Per-column accuracy (K,) over known labels (nan where a column has none)."""
    predicted = (x @ params["w"] + params["b"]) > 0
    known = y >= 0
    with np.errstate(invalid="ignore"):
        return ((predicted == (y == 1)) & known).sum(0) / known.sum(0)


def softmax_predictions(params, x) -> np.ndarray:
    return (x @ params["w"] + params["b"]).argmax(-1)


def probe_attributes(train: Split, val: Split, test: Split) -> dict:
    """Per-attribute test accuracy (K,) and the weight decay chosen for each."""
    xt, xv, xs = standardise(train.features, val.features, test.features)
    k = train.labels.shape[1]
    val_acc = np.stack([binary_accuracy(fit_binary(xt, train.labels, np.full(k, d)), xv, val.labels)
                        for d in WEIGHT_DECAYS])
    chosen = np.asarray(WEIGHT_DECAYS)[np.nan_to_num(val_acc, nan=0.0).argmax(0)]
    x_all, xs = standardise(np.concatenate([train.features, val.features]), test.features)  # refit on train + val
    params = fit_binary(x_all, np.concatenate([train.labels, val.labels]), chosen)
    return {"accuracy": binary_accuracy(params, xs, test.labels), "weight_decay": chosen}


def probe_classes(train: Split, val: Split, test: Split, classes: int) -> dict:
    """Softmax probe: test accuracy, per-class accuracy and the chosen weight decay."""
    xt, xv = standardise(train.features, val.features)
    known_v = val.labels >= 0
    scores = [(softmax_predictions(fit_softmax(xt, train.labels, d, classes), xv) == val.labels)[known_v].mean()
              for d in WEIGHT_DECAYS]
    decay = WEIGHT_DECAYS[int(np.argmax(scores))]
    x_all, xs = standardise(np.concatenate([train.features, val.features]), test.features)
    params = fit_softmax(x_all, np.concatenate([train.labels, val.labels]), decay, classes)
    predicted, known = softmax_predictions(params, xs), test.labels >= 0
    per_class = np.array([(predicted[test.labels == c] == c).mean() if (test.labels == c).any() else np.nan
                          for c in range(classes)])
    return {"accuracy": float((predicted == test.labels)[known].mean()), "per_class": per_class, "weight_decay": decay}
