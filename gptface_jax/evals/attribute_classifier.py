"""The judge of edits: a small CNN trained on SynthFaces pixels, independent of the generator.

It sees RGB face crops (never VQ codes or GPTFace states) and predicts the 16 binary attributes,
the 5 expressions and (SynthFaces) the 5 hair colours. Training applies a blur/noise augmentation
so the judge also reads VQ reconstructions, whose fine detail is softer than the rendered faces;
`train` reports its held-out accuracy on both the rendered test faces and their VQ
reconstructions, so a reader can see how far its verdict on generated faces can be trusted.
"""
from __future__ import annotations

import json
import os

import cv2
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from safetensors.numpy import load_file, save_file

from data_pipelines.errors import DataError
from data_pipelines.shards import ShardSource
from data_pipelines.synthfaces.attributes import HAIR_COLOURS
from gptface_jax.evals.downstream import load_labelled
from gptface_jax.models.conv import Conv
from gptface_jax.serving.export import flatten
from gptface_jax.serving.exported import unflatten

PARAMS_FILE, INFO_FILE = "classifier.safetensors", "classifier.json"


class FaceCNN(nn.Module):
    num_attributes: int
    num_expressions: int
    num_hair_colours: int = 0

    @nn.compact
    def __call__(self, images_uint8):
        x = images_uint8.astype(jnp.float32) / 127.5 - 1.0
        for features in (32, 64, 64):
            x = nn.relu(Conv(features, (3, 3), strides=(2, 2))(x))
            x = nn.relu(Conv(features, (3, 3))(x))
        # Faces are aligned, so where a feature is matters (a hat is at the top, a beard at the
        # bottom): the spatial map is flattened, not pooled.
        x = nn.relu(nn.Dense(256)(x.reshape(x.shape[0], -1)))
        return nn.Dense(self.num_attributes + self.num_expressions + self.num_hair_colours)(x)


def _augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random blur (VQ-like softness), noise and brightness, per image."""
    out = images.astype(np.float32)
    blur = rng.random(len(out)) < 0.5
    for i in np.flatnonzero(blur):
        out[i] = cv2.GaussianBlur(out[i], (0, 0), sigmaX=float(rng.uniform(0.5, 1.2)))
    out += rng.normal(0, 4.0, out.shape) + rng.uniform(-10, 10, (len(out), 1, 1, 1))
    return np.clip(out, 0, 255).astype(np.uint8)


def _loss(logits, attributes, expression, hair, k: int, e: int):
    bce = optax.sigmoid_binary_cross_entropy(logits[:, :k], attributes.astype(jnp.float32)).mean()
    loss = bce + optax.softmax_cross_entropy_with_integer_labels(logits[:, k:k + e], expression).mean()
    if logits.shape[1] > k + e:
        loss = loss + optax.softmax_cross_entropy_with_integer_labels(logits[:, k + e:], hair).mean()
    return loss


class Judge:
    def __init__(self, model: FaceCNN, params, info: dict):
        self.model, self.params, self.info = model, params, info
        self._apply = jax.jit(model.apply)

    @property
    def attribute_names(self) -> list[str]:
        return self.info["attribute_names"]

    def predict_all(self, images_uint8: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
        """(N, S, S, 3) uint8 -> probabilities: 'attributes' (N, 16), 'expression' (N, 5) and, when
        the judge has that head, 'hair_colour' (N, 5)."""
        size = self.info["image_size"]
        if images_uint8.shape[1] != size:
            images_uint8 = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images_uint8])
        k, e = len(self.attribute_names), len(self.info["expression_names"])
        logits = np.concatenate([np.asarray(self._apply(self.params, images_uint8[i:i + batch_size]))
                                 for i in range(0, len(images_uint8), batch_size)])
        out = {"attributes": np.asarray(jax.nn.sigmoid(logits[:, :k])),
               "expression": np.asarray(jax.nn.softmax(logits[:, k:k + e], -1))}
        if logits.shape[1] > k + e:
            out["hair_colour"] = np.asarray(jax.nn.softmax(logits[:, k + e:], -1))
        return out

    def predict(self, images_uint8: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(N, S, S, 3) uint8 -> attribute probabilities (N, 16), expression probabilities (N, 5)."""
        out = self.predict_all(images_uint8, batch_size)
        return out["attributes"], out["expression"]

    def accuracy(self, images, attributes, expression, hair_colour=None) -> dict:
        out = self.predict_all(images)
        attr, expr = out["attributes"], out["expression"]
        per = ((attr > 0.5) == (attributes == 1)).mean(0)
        hair = ({"hair_colour_accuracy": float((out["hair_colour"].argmax(-1) == hair_colour).mean())}
                if "hair_colour" in out and hair_colour is not None else {})
        return {"attribute_mean_accuracy": float(per.mean()),
                "expression_accuracy": float((expr.argmax(-1) == expression).mean()),
                "attributes": {n: float(a) for n, a in zip(self.attribute_names, per)}, **hair}


def fit(images: np.ndarray, attributes: np.ndarray, expression: np.ndarray, hair: np.ndarray, names: list[str],
        expression_names: list[str], hair_names: list[str], steps: int = 1500, batch_size: int = 64,
        learning_rate: float = 1e-3, seed: int = 0, augment: bool = True) -> Judge:
    """A judge fitted to labelled (N, S, S, 3) uint8 faces; `hair_names` empty: no hair-colour head."""
    size = int(images.shape[1])
    model = FaceCNN(len(names), len(expression_names), len(hair_names))
    params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, size, size, 3), jnp.uint8))
    tx = optax.adamw(optax.warmup_cosine_decay_schedule(0.0, learning_rate, steps // 10, steps), weight_decay=1e-4)
    opt = tx.init(params)
    k = len(names)

    @jax.jit
    def step(params, opt, x, a, e, h):
        loss, grads = jax.value_and_grad(lambda p: _loss(model.apply(p, x), a, e, h, k, len(expression_names)))(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, loss

    rng = np.random.default_rng(seed)
    for _ in range(steps):
        rows = rng.integers(0, len(images), batch_size)
        batch = _augment(images[rows], rng) if augment else images[rows]
        params, opt, loss = step(params, opt, batch, attributes[rows], expression[rows], np.maximum(hair[rows], 0))
    info = {"attribute_names": names, "expression_names": expression_names, "hair_colour_names": hair_names,
            "image_size": size, "steps": steps, "train_examples": int(len(images)), "final_train_loss": float(loss)}
    return Judge(model, params, info)


def train(dataset_dir: str, out_dir: str, steps: int = 1500, batch_size: int = 64, learning_rate: float = 1e-3,
          limit: int = 0, seed: int = 0, vq=None) -> Judge:
    """Trains the judge on `dataset_dir`'s train split; its test accuracy (and on `vq` reconstructions) goes
    in classifier.json."""
    source = ShardSource(dataset_dir, "train", verify=False)
    size = int(source.image_shape[0]) if source.image_shape else 64
    train = load_labelled(dataset_dir, "train", size, limit)
    names, expressions = train["attribute_names"], train["expression_names"]
    if not names or (train["attributes"] < 0).any() or (train["expression"] < 0).any():
        raise DataError(f"{dataset_dir}: the judge trains on SynthFaces, whose every face has all labels")
    hair = train["hair_colour"]
    hair_names = list(HAIR_COLOURS) if (hair >= 0).all() and hair.max() < len(HAIR_COLOURS) else []
    judge = fit(train["images"], train["attributes"], train["expression"], hair, names, expressions, hair_names,
                steps, batch_size, learning_rate, seed)
    info = judge.info
    test = load_labelled(dataset_dir, "test", size)
    test_images, test_attr, test_expr = test["images"], test["attributes"], test["expression"]
    info["test"] = judge.accuracy(test_images, test_attr, test_expr, test["hair_colour"])
    if vq is not None:  # the judge on VQ reconstructions of the same held-out faces
        recon = vq.decode(vq.encode(test_images))
        info["test_vq_reconstructions"] = judge.accuracy(recon, test_attr, test_expr, test["hair_colour"])
    os.makedirs(out_dir, exist_ok=True)
    save_file(flatten(jax.device_get(judge.params)), os.path.join(out_dir, PARAMS_FILE))
    with open(os.path.join(out_dir, INFO_FILE), "w") as f:
        json.dump(info, f, indent=1)
    return judge


def load(directory: str) -> Judge:
    path = os.path.join(directory, INFO_FILE)
    if not os.path.isfile(path):
        raise DataError(f"{directory}: no trained attribute classifier ({INFO_FILE}); train one first")
    with open(path) as f:
        info = json.load(f)
    model = FaceCNN(len(info["attribute_names"]), len(info["expression_names"]), len(info.get("hair_colour_names", [])))
    params = jax.tree.map(jnp.asarray, unflatten(load_file(os.path.join(directory, PARAMS_FILE))))
    return Judge(model, params, info)
