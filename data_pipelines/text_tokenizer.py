"""The project's text tokenizer: SentencePiece trained on the corpus captions, fixed-length batches.

Special ids are fixed (the model and the masking code rely on them):

    PAD = 0   <pad>    padding after the caption
    UNK = 1   <unk>    (rare: byte fallback spells unseen characters as UTF-8 bytes)
    CLS = 2   <cls>    first token of every sequence; the ITM head reads it
    SEP = 3   <sep>    between text and image tokens
    MASK = 4  <mask>   masked text positions

They are control symbols, so caption text can never produce them. Normalisation is the identity
and byte fallback is on, so decode(encode(text)) == text for any (cleaned) caption, any language.
"""
from __future__ import annotations

import argparse
import io
import os
import re

import numpy as np
import sentencepiece as spm

from data_pipelines.errors import DataError, OptionError

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL_PIECES = ("<pad>", "<unk>", "<cls>", "<sep>", "<mask>")
NUM_SPECIAL = len(SPECIAL_PIECES)


# BPE, not unigram: at 1000 requested pieces unigram stops near 717 and splits attribute words
# ("young", "black", "wavy") into pieces; BPE keeps them whole and gives every piece asked for
# (docs/experiments.md, "BPE by default").
DEFAULT_MODEL_TYPE = "bpe"


def train(captions, vocab_size: int, *, model_type: str = DEFAULT_MODEL_TYPE, seed_sentences: int = 1_000_000) -> bytes:
    """Trains on an iterable of caption strings; returns the serialized model."""
    if vocab_size <= NUM_SPECIAL + 256:
        raise OptionError(f"vocab_size={vocab_size} must exceed {NUM_SPECIAL + 256} "
                          f"({NUM_SPECIAL} special ids + 256 byte-fallback pieces)")
    model = io.BytesIO()
    try:
        _train_sentencepiece(captions, vocab_size, model_type, seed_sentences, model)
    except RuntimeError as e:
        needed = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(e))
        if needed is None:
            raise
        raise OptionError(f"vocab_size={vocab_size} is too small for these captions: the special ids, the 256 "
                          f"byte pieces and every character they use need {needed.group(1)}; pass a larger "
                          "--vocab-size (and room for word pieces beyond that)") from None
    return model.getvalue()


def _train_sentencepiece(captions, vocab_size: int, model_type: str, seed_sentences: int, model) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(c for c in captions if c), model_writer=model, vocab_size=vocab_size,
        model_type=model_type, pad_id=PAD, unk_id=UNK, bos_id=-1, eos_id=-1,
        pad_piece="<pad>", unk_piece="<unk>", control_symbols=list(SPECIAL_PIECES[2:]),
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        character_coverage=0.9995, split_digits=True, hard_vocab_limit=False,
        input_sentence_size=seed_sentences, shuffle_input_sentence=True, num_threads=os.cpu_count() or 1,
        minloglevel=2)


class TextTokenizer:
    """Encodes caption batches to (ids, lengths) of a fixed length; decodes them back."""

    def __init__(self, model: bytes | str):
        proto = model if isinstance(model, bytes) else open(model, "rb").read()
        self.proto = proto
        self.sp = spm.SentencePieceProcessor(model_proto=proto)
        pieces = tuple(self.sp.id_to_piece(i) for i in range(NUM_SPECIAL))
        if pieces != SPECIAL_PIECES:
            raise DataError(f"text tokenizer has special pieces {pieces}, expected {SPECIAL_PIECES} at ids 0..4: "
                            "not a model trained by `gptface tokenizer text`")

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, texts: list[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """ids (B, max_len) int32, PAD after the text, truncated at max_len; lengths (B,) before padding."""
        ids = np.full((len(texts), max_len), PAD, np.int32)
        lengths = np.zeros((len(texts),), np.int32)
        for row, pieces in enumerate(self.sp.encode(list(texts))):
            n = min(len(pieces), max_len)
            ids[row, :n] = pieces[:n]
            lengths[row] = n
        return ids, lengths

    def decode(self, ids: np.ndarray) -> list[str]:
        """Inverse of encode: special ids (padding, masks) are dropped."""
        rows = np.atleast_2d(np.asarray(ids))
        return [self.sp.decode([int(i) for i in row if i >= NUM_SPECIAL]) for row in rows]

    def check_fits(self, table_size: int) -> None:
        """The model's text embedding table (config text.vocab_size) must hold every id."""
        if self.vocab_size > table_size:
            raise DataError(f"text tokenizer has vocab size {self.vocab_size} but the config's "
                            f"text.vocab_size={table_size} is smaller; retrain the tokenizer or raise it")


def captions_of(dataset_dir: str, split: str = "train"):
    from data_pipelines.shards import ShardSource
    source = ShardSource(dataset_dir, split)
    for i in range(len(source)):
        caption = source[i]["caption"]
        yield caption.decode("utf-8") if isinstance(caption, bytes) else caption


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset folder (SynthFaces or ingested)")
    p.add_argument("--vocab-size", type=int, required=True)
    p.add_argument("--out", required=True, help="model file to write (.model)")
    p.add_argument("--model-type", default=DEFAULT_MODEL_TYPE, choices=("unigram", "bpe"))


def run(args: argparse.Namespace) -> None:
    proto = train(captions_of(args.data), args.vocab_size, model_type=args.model_type)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(proto)
    tok = TextTokenizer(proto)
    print(f"text tokenizer ({tok.vocab_size} pieces) written to {args.out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    run(parser.parse_args())
