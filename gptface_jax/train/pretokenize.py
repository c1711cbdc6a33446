"""Pre-tokenization: face-text shards -> image codes (uint16) + text ids, written once.

    gptface data pretokenize --data DIR --text-tokenizer text.model --vq-workdir W --out DIR2

Pre-training reads these shards instead of decoding JPEGs and running the VQ encoder every step.
Images are encoded in fixed-size batches under jit (the last batch is padded, and the padding
dropped), labels and captions are carried over, and the text tokenizer model is copied beside the
shards so the ids can always be decoded; so are the VQ code vectors (`codebook.npy`), from which
the transformer's image embeddings can start.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile

import numpy as np
import tensorflow_datasets as tfds
from tqdm import tqdm

from data_pipelines.errors import DataError
from data_pipelines.pipeline import decode_jpeg
from data_pipelines.shards import ShardSource
from data_pipelines.text_tokenizer import TextTokenizer
from gptface_jax.runtime import layout
from gptface_jax.serving import image_tokenizer


def features(num_codes: int, max_len: int, num_attributes: int) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "image_codes": tfds.features.Tensor(shape=(num_codes,), dtype=np.uint16),
        "text_ids": tfds.features.Tensor(shape=(max_len,), dtype=np.int32),
        "text_len": tfds.features.Scalar(dtype=np.int32),
        "caption": tfds.features.Text(),
        "attributes": tfds.features.Tensor(shape=(num_attributes,), dtype=np.int8),
        "hair_colour": tfds.features.Scalar(dtype=np.int8),
        "expression": tfds.features.Scalar(dtype=np.int8),
        "index": tfds.features.Scalar(dtype=np.int64),
        "caption_true": tfds.features.Scalar(dtype=np.int8),
        "caption_false": tfds.features.Scalar(dtype=np.int8),
        "caption_noise": tfds.features.Scalar(dtype=np.int8),
    })


@dataclasses.dataclass
class PretokenizedConfig(tfds.core.BuilderConfig):
    data: str = ""
    text_tokenizer: str = ""
    vq_workdir: str = ""
    max_len: int = 32
    batch_size: int = 64


class PretokenizedFaces(tfds.core.GeneratorBasedBuilder):
    """Image codes and text ids of a face-text dataset."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [PretokenizedConfig(name="default")]

    def _setup(self):
        if not hasattr(self, "_vq"):
            cfg = self.builder_config
            self._vq = image_tokenizer.load(cfg.vq_workdir)
            self._text = TextTokenizer(cfg.text_tokenizer)
            self._source_splits = {s: ShardSource(cfg.data, s) for s in ("train", "test", "validation")
                                   if _has_split(cfg.data, s)}
            shape = next(iter(self._source_splits.values())).image_shape
            if shape[0] != self._vq.config.image_size:
                raise DataError(f"{cfg.data} holds {shape[0]} px images but the VQ tokenizer in {cfg.vq_workdir} "
                                f"was trained on {self._vq.config.image_size} px")

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        if not cfg.data:
            return tfds.core.DatasetInfo(builder=self, features=features(1, 1, 0))
        self._setup()
        any_source = next(iter(self._source_splits.values()))
        num_attributes = len(any_source.metadata.get("attribute_names", []))
        metadata = dict(any_source.metadata)
        metadata.update(vq_workdir=os.path.abspath(cfg.vq_workdir), grid=self._vq.config.grid,
                        codebook_size=self._vq.config.codebook_size, text_vocab_size=self._text.vocab_size,
                        max_len=cfg.max_len, source_dataset=os.fspath(any_source.dataset_dir))
        return tfds.core.DatasetInfo(builder=self, description=__doc__,
                                     features=features(self._vq.config.grid ** 2, cfg.max_len, num_attributes),
                                     metadata=tfds.core.MetadataDict(metadata))

    def _split_generators(self, dl_manager):
        self._setup()
        return {split: self._generate_examples(source) for split, source in self._source_splits.items()}

    def _generate_examples(self, source: ShardSource):
        cfg = self.builder_config
        bs = cfg.batch_size
        for start in tqdm(range(0, len(source), bs), desc=f"pretokenize {source.split}", mininterval=2,
                          file=sys.stderr):
            records = [source[i] for i in range(start, min(start + bs, len(source)))]
            images = np.stack([decode_jpeg(r["image"]) for r in records])
            n = len(images)
            if n < bs:  # one compiled shape for every batch
                images = np.concatenate([images, np.repeat(images[-1:], bs - n, 0)])
            codes = self._vq.encode(images)[:n].reshape(n, -1).astype(np.uint16)
            captions = [r["caption"].decode("utf-8") if isinstance(r["caption"],
                                                                   bytes) else r["caption"] for r in records]
            ids, lengths = self._text.encode(captions, cfg.max_len)
            for k, r in enumerate(records):
                yield int(r["index"]), {
                    "image_codes": codes[k], "text_ids": ids[k], "text_len": lengths[k], "caption": captions[k],
                    "attributes": np.asarray(r["attributes"], np.int8), "hair_colour": r["hair_colour"],
                    "expression": r["expression"], "index": r["index"], "caption_true": r["caption_true"],
                    "caption_false": r["caption_false"], "caption_noise": r["caption_noise"]}


def _has_split(data: str, split: str) -> bool:
    try:
        ShardSource(data, split, verify=False)
        return True
    except DataError:
        return False


def check_against_config(text_tokenizer: str, vq_workdir: str, config) -> None:
    """Both tokenizers must fit the pre-training config; a mismatch names both values."""
    TextTokenizer(text_tokenizer).check_fits(config.text.vocab_size)
    image_tokenizer.load(vq_workdir).check_matches(config.data.image_size, config.vq.codebook_size,
                                                   config.vq.downsample)


def pretokenize(data: str, text_tokenizer: str, vq_workdir: str, out: str, *, max_len: int = 32,
                batch_size: int = 64, config=None) -> str:
    """Writes the pre-tokenized dataset under `out`; returns its folder.

    With a pre-training `config`, the tokenizers are checked against it first and its
    text.max_len is used.
    """
    for path, what in ((text_tokenizer, "text tokenizer model"), (vq_workdir, "VQ workdir")):
        if not os.path.exists(path):
            raise DataError(f"{what} {path} does not exist")
    if config is not None:
        check_against_config(text_tokenizer, vq_workdir, config)
        max_len = config.text.max_len
    name = f"len{max_len}_" + os.path.basename(os.path.normpath(vq_workdir)).replace(".", "_")[:40]
    cfg = PretokenizedConfig(name=name, data=data, text_tokenizer=text_tokenizer, vq_workdir=vq_workdir,
                             max_len=max_len, batch_size=batch_size)
    builder = PretokenizedFaces(config=cfg, data_dir=out, file_format="array_record")
    with tempfile.TemporaryDirectory() as tmp:
        builder.download_and_prepare(download_dir=tmp)
    path = os.fspath(builder.data_path)
    shutil.copy(text_tokenizer, os.path.join(path, layout.TOKENIZER))
    write_codebook(vq_workdir, path)
    return path


def write_codebook(vq_workdir: str, pretokenized_dir: str) -> str:
    """Saves the VQ tokenizer's unit-norm code vectors beside the shards (`codebook.npy`)."""
    vectors = image_tokenizer.load(vq_workdir).unit_codebook()
    target = os.path.join(pretokenized_dir, layout.CODEBOOK)
    np.save(target, vectors)
    return target


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="face-text dataset (SynthFaces, ingested or benchmark)")
    p.add_argument("--text-tokenizer", required=True, help="model written by `gptface tokenizer text`")
    p.add_argument("--vq-workdir", required=True, help="workdir of `gptface tokenizer image`")
    p.add_argument("--out", required=True)
    p.add_argument("--max-len", type=int, default=32, help="text ids per caption (config text.max_len)")
    p.add_argument("--check-config", default="", metavar="FILE:ARG",
                   help="pre-training config the tokenizers must fit, e.g. experiments/pretrain.py:tiny "
                        "(its text.max_len replaces --max-len)")
    p.add_argument("--batch-size", type=int, default=64)


def run(args: argparse.Namespace) -> None:
    config = None
    if args.check_config:
        from gptface_jax.runtime import config_lib
        config = config_lib.validate(config_lib.load(["--config", args.check_config]))
    path = pretokenize(args.data, args.text_tokenizer, args.vq_workdir, args.out, max_len=args.max_len,
                       batch_size=args.batch_size, config=config)
    print(f"pre-tokenized shards written to {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    run(parser.parse_args())
