"""A pre-trained GPTFace for inference: config, parameters and both tokenizers from a workdir.

    pretrained = load("runs/demo/pretrain")   # config.json + the latest checkpoint
    pretrained.text_ids(["a smiling woman"]), pretrained.image_codes(images_uint8) -> token arrays

Only the parameters are restored (no optimizer state), onto this process's first device; the VQ
tokenizer is the one the pre-tokenized shards were made with (their metadata names it).
"""
from __future__ import annotations

import dataclasses
import json
import os

import jax
import ml_collections
import numpy as np

from data_pipelines.errors import DataError
from data_pipelines.shards import ShardSource
from data_pipelines.text_tokenizer import TextTokenizer
from gptface_jax.models.transformer import GPTFace, ModelConfig, abstract_variables, codebook_embeddings
from gptface_jax.runtime import layout, tokenizer_record
from gptface_jax.runtime.checkpoints import Checkpointer
from gptface_jax.serving import image_tokenizer


@dataclasses.dataclass
class Pretrained:
    config: ml_collections.ConfigDict
    model: GPTFace
    params: dict
    tokenizer: TextTokenizer
    vq: object                      # gptface_jax.serving.image_tokenizer.TrainedVQ
    workdir: str = ""

    @property
    def grid(self) -> int:
        return self.model.config.image_grid

    @property
    def image_size(self) -> int:
        return int(self.config.data.image_size)

    def text_ids(self, texts: list[str]) -> np.ndarray:
        for t in texts:
            if not t or not t.strip():
                raise DataError("the text is empty: say what the face should show, e.g. \"a smiling woman\"")
        ids, _ = self.tokenizer.encode(list(texts), self.model.config.max_text_len)
        return np.asarray(ids, np.int32)

    def image_codes(self, images_uint8: np.ndarray) -> np.ndarray:
        return self.vq.encode(images_uint8).reshape(len(images_uint8), -1).astype(np.int32)

    def images(self, codes: np.ndarray) -> np.ndarray:
        return self.vq.decode(np.asarray(codes).reshape(len(codes), self.grid, self.grid))

    def source_dataset(self) -> str:
        """The labelled SynthFaces folder the pre-tokenized shards were made from (their metadata names it)."""
        path = ShardSource(self.config.data.pretokenized, "train", verify=False).metadata.get("source_dataset")
        if not path:
            raise DataError("the pre-tokenized shards do not name the SynthFaces data they came from; "
                            "pass the dataset folder (--dataset)")
        return layout.locate(path, self.config.data.pretokenized)


def load_params(workdir: str, step: int | None = None) -> tuple:
    """(config, model, params) of a pre-training workdir at `step` (default: the latest checkpoint),
    on one device."""
    path = os.path.join(workdir, layout.CONFIG)
    if not os.path.isfile(path):
        raise DataError(f"{workdir}: not a pre-training workdir (no config.json); train with `gptface train`")
    from gptface_jax.runtime import config_lib
    with open(path) as f:
        config = config_lib.upgrade(json.load(f))
    config.data.pretokenized = layout.locate(config.data.pretokenized, workdir)
    # inference runs the plain loop of blocks (checkpoints of scanned runs are converted on restore)
    config.model.scan_layers, config.model.remat = False, "none"
    model = GPTFace(ModelConfig.from_config(config))
    abstract = abstract_variables(model)
    checkpointer = Checkpointer(workdir, keep=100, async_save=False)
    if checkpointer.latest_step() is None:
        raise DataError(f"{workdir}: no checkpoint yet")
    params = checkpointer.restore_part({"params": abstract}, jax.sharding.SingleDeviceSharding(jax.devices()[0]),
                                       step=step)["params"]
    checkpointer.close()
    return config, model, params


def load(workdir: str) -> Pretrained:
    config, model, params = load_params(workdir)
    data = config.data.pretokenized
    tokenizer_record.check(workdir, data)
    source = ShardSource(data, "train", verify=False)
    vq_dir = layout.locate(source.metadata.get("vq_workdir", ""), data)
    if not vq_dir or not os.path.isdir(vq_dir):
        raise DataError(f"{data}: its VQ tokenizer {vq_dir!r} is gone; the image tokens cannot be decoded")
    vq = image_tokenizer.load(vq_dir)
    _check_decoder_codebook(vq, vq_dir, data)
    return Pretrained(config, model, params, TextTokenizer(os.path.join(data, layout.TOKENIZER)), vq, workdir)


def _check_decoder_codebook(vq, vq_dir: str, data: str) -> None:
    """The VQ that decodes must be the one that tokenized the shards: its code vectors are the codebook
    saved beside them (a VQ retrained in place would decode every image token as another code)."""
    path = os.path.join(data, layout.CODEBOOK)
    if not os.path.isfile(path):
        return
    ours, theirs = vq.unit_codebook(), np.load(path)
    if ours.shape != theirs.shape or not np.allclose(ours, theirs, atol=1e-5):
        raise DataError(f"{vq_dir}: its code vectors are not those the shards in {data} were tokenized with "
                        f"({path}); was the VQ retrained in place? Images would decode as other codes")


def initial_image_embeddings(config) -> np.ndarray | None:
    """The image-token table a fresh model starts from (model.image_embed_init='codebook'): its data's
    VQ code vectors, projected; None for a random start."""
    if config.model.image_embed_init != "codebook":
        return None
    path = os.path.join(config.data.pretokenized, layout.CODEBOOK)
    if not os.path.exists(path):
        raise DataError(f"model.image_embed_init='codebook' needs {path}; rerun `gptface data pretokenize` "
                        "(it writes the VQ code vectors) or set model.image_embed_init='random'")
    codebook = np.load(path)
    if codebook.shape[0] != config.vq.codebook_size:
        raise DataError(f"{path} has {codebook.shape[0]} codes but vq.codebook_size={config.vq.codebook_size}")
    return codebook_embeddings(codebook, config.model.width, config.seed)
