"""A PyTorch reference of a GPTFace export: the transformer's inference path and the VQ tokenizer.

Imports torch, numpy and safetensors, never jax or flax. `gptface export` copies this file into the
export directory beside `export_format.py`, so a user elsewhere can do

    import torch, torch_model             # from inside the export directory (or on sys.path)
    m = torch_model.load("path/to/export")
    codes = m.vq.encode(torch.from_numpy(images_uint8))            # (B, N) image codes
    feats = m.model.features(codes)                                # {'cls', 'mean'} (B, D)
    log_odds = m.model.itm_score(torch.from_numpy(m.text_ids(["a smiling woman"])), codes)

Every parameter keeps the export's flat name and layout (`block_0.attention.query.kernel` is a
(width, heads, head_dim) tensor here as in JAX), so `state_dict()` and `params.safetensors` hold the
same names and shapes. The arithmetic follows `gptface_jax/models/transformer.py` and `vq.py`
step for step, in float32: `gptface export --torch-check` reports how far the two agree.
"""
from __future__ import annotations

import json
import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

try:  # inside the package
    from . import export_format
except ImportError:  # copied into an export directory beside export_format.py
    import export_format

# The text tokenizer's fixed special ids (data_pipelines/text_tokenizer.py; a test checks they agree).
PAD, CLS, SEP = 0, 2, 3


def _zeros(*shape) -> nn.Parameter:
    return nn.Parameter(torch.zeros(*shape))


def padded(n: int, multiple: int = 128) -> int:
    """Vocabulary tables hold a multiple of 128 rows (as in the JAX model)."""
    return -(-n // multiple) * multiple


# --- the transformer -----------------------------------------------------------------------------

class Projection(nn.Module):
    """x @ kernel + bias over x's last `len(in_shape)` axes; kernel shape in_shape + out_shape."""

    def __init__(self, in_shape: tuple, out_shape: tuple):
        super().__init__()
        self.n_in, self.out_shape = len(in_shape), tuple(out_shape)
        self.kernel = _zeros(*in_shape, *out_shape)
        self.bias = _zeros(*out_shape)

    def forward(self, x):
        lead = x.shape[:x.ndim - self.n_in]
        y = x.reshape(*lead, -1) @ self.kernel.reshape(math.prod(self.kernel.shape[:self.n_in]), -1)
        return y.reshape(*lead, *self.out_shape) + self.bias


class LayerNorm(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(width))
        self.bias = _zeros(width)

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = (x - mean).square().mean(-1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + 1e-6) * self.scale + self.bias


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.head_dim = width // heads
        for name in ("query", "key", "value"):
            self.add_module(name, Projection((width,), (heads, self.head_dim)))
        self.out = Projection((heads, self.head_dim), (width,))

    def forward(self, x, key_mask):
        q, k, v = self.query(x), self.key(x), self.value(x)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~key_mask[:, None, None, :], torch.finfo(scores.dtype).min)
        return self.out(torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_dim: int):
        super().__init__()
        self.ln_attention, self.attention = LayerNorm(width), Attention(width, heads)
        self.ln_mlp = LayerNorm(width)
        self.mlp_in, self.mlp_out = Projection((width,), (mlp_dim,)), Projection((mlp_dim,), (width,))

    def forward(self, x, key_mask):
        x = x + self.attention(self.ln_attention(x), key_mask)
        return x + self.mlp_out(F.gelu(self.mlp_in(self.ln_mlp(x)), approximate="tanh"))  # flax's gelu


def _l2_normalise(v):
    return v * torch.rsqrt(v.square().sum(-1, keepdim=True) + 1e-12)


class GPTFace(nn.Module):
    """`[CLS] text [SEP] image` through the blocks: features, match log-odds, ITC embeddings, token logits."""

    def __init__(self, *, text_vocab: int, codebook_size: int, max_text_len: int, image_grid: int,
                 num_layers: int, width: int, num_heads: int, mlp_dim: int, tie_heads: bool = True,
                 itc_dim: int = 0, itm_similarity: bool = False, itc_words: bool = False):
        super().__init__()
        self.text_vocab, self.codebook_size = text_vocab, codebook_size
        self.max_text_len, self.image_grid, self.num_layers = max_text_len, image_grid, num_layers
        self.tie_heads, self.itc_dim, self.itm_similarity = tie_heads, itc_dim, itm_similarity
        self.text_embed = _zeros(padded(text_vocab), width)
        self.image_embed = _zeros(padded(codebook_size + 1), width)  # + the image [MASK] row
        self.text_pos = _zeros(max_text_len + 2, width)
        self.image_row, self.image_col = _zeros(image_grid, width), _zeros(image_grid, width)
        self.segment = _zeros(2, width)
        for i in range(num_layers):
            self.add_module(f"block_{i}", Block(width, num_heads, mlp_dim))
        self.final_ln = LayerNorm(width)
        self.itm_head = Projection((width,), (2,))
        self.text_bias, self.image_bias = _zeros(padded(text_vocab)), _zeros(padded(codebook_size))
        if itc_dim:
            self.itc_text_proj, self.itc_image_proj = _zeros(width, itc_dim), _zeros(width, itc_dim)
            self.itc_log_scale, self.itc_bias = _zeros(()), _zeros(())
        if itc_words:  # pre-training's caption-token head: loaded so the checkpoint maps one to one, unused here
            self.itc_word_head = _zeros(itc_dim, padded(text_vocab))
        if itm_similarity:
            self.itm_similarity_gain = _zeros(())
        if not tie_heads:
            self.text_out = _zeros(padded(text_vocab), width)
            self.image_out = _zeros(padded(codebook_size), width)

    @classmethod
    def from_export_config(cls, config: dict, image_grid: int) -> GPTFace:
        """From the resolved pre-training config an export stores as config.json."""
        m = config["model"]
        return cls(text_vocab=config["text"]["vocab_size"], codebook_size=config["vq"]["codebook_size"],
                   max_text_len=config["text"]["max_len"], image_grid=image_grid, num_layers=m["num_layers"],
                   width=m["width"], num_heads=m["num_heads"], mlp_dim=m["mlp_dim"],
                   tie_heads=m.get("tie_heads", True), itc_dim=m.get("itc_dim", 0),
                   itm_similarity=m.get("itm_similarity", False), itc_words=m.get("itc_words", False))

    @property
    def image_mask_id(self) -> int:
        return self.codebook_size

    def embed_text(self, text_ids):
        """(B, L) ids -> `[CLS] text [SEP]` embedded (B, L + 2, D) and its key mask."""
        b = text_ids.shape[0]
        tokens = torch.cat([torch.full((b, 1), CLS, dtype=text_ids.dtype), text_ids,
                            torch.full((b, 1), SEP, dtype=text_ids.dtype)], 1)
        return self.text_embed[tokens] + self.text_pos[None] + self.segment[0], tokens != PAD

    def embed_image(self, image_codes):
        g = self.image_grid
        positions = self.image_row.repeat_interleave(g, 0) + self.image_col.repeat(g, 1)
        return self.image_embed[image_codes] + positions[None] + self.segment[1]

    def encode(self, x, key_mask):
        for i in range(self.num_layers):
            x = getattr(self, f"block_{i}")(x, key_mask)
        return self.final_ln(x)

    def forward(self, text_ids, image_codes) -> dict:
        """(B, L) text ids, (B, N) image codes -> {'hidden', 'cls', 'itm_logits'} of the joint pass."""
        text, text_mask = self.embed_text(text_ids)
        x = torch.cat([text, self.embed_image(image_codes)], 1)
        key_mask = torch.cat([text_mask, torch.ones(image_codes.shape, dtype=torch.bool)], 1)
        hidden = self.encode(x, key_mask)
        return {"hidden": hidden, "cls": hidden[:, 0], "itm_logits": self.itm_head(hidden[:, 0])}

    def features(self, image_codes) -> dict:
        """(B, N) codes -> {'cls', 'mean'} (B, D): the image read alone (the text all PAD)."""
        text = torch.full((image_codes.shape[0], self.max_text_len), PAD, dtype=image_codes.dtype)
        hidden = self(text, image_codes)["hidden"]
        return {"cls": hidden[:, 0], "mean": hidden[:, 2 + self.max_text_len:].mean(1)}

    def itc_text(self, text_ids):
        """(B, L) ids -> (B, E) L2-normalised embedding of the text-only pass."""
        text, text_mask = self.embed_text(text_ids)
        return _l2_normalise(self.encode(text, text_mask)[:, 0] @ self.itc_text_proj)

    def itc_image(self, image_codes):
        """(B, N) codes -> (B, E) L2-normalised embedding of the image-only pass `[CLS] image`."""
        image = self.embed_image(image_codes)
        cls = (self.text_embed[CLS] + self.text_pos[0] + self.segment[0]).expand(image.shape[0], 1, -1)
        x = torch.cat([cls, image], 1)
        return _l2_normalise(self.encode(x, torch.ones(x.shape[:2], dtype=torch.bool))[:, 0] @ self.itc_image_proj)

    def itc_similarity(self, text_ids, image_codes):
        """(B,) cosine of each pair's unimodal embeddings (the ITC logit is exp(itc_log_scale) x this)."""
        self._needs_itc()
        return (self.itc_text(text_ids) * self.itc_image(image_codes)).sum(-1)

    def match_logits(self, text_ids, image_codes):
        """(B, 2) ITM logits: the fusion head, plus the unimodal similarity where the model was trained with it."""
        itm = self(text_ids, image_codes)["itm_logits"]
        if not self.itm_similarity:
            return itm
        term = self.itm_similarity_gain * self.itc_log_scale.exp() * self.itc_similarity(text_ids, image_codes)
        return torch.stack([itm[:, 0], itm[:, 1] + term], 1)

    def itm_score(self, text_ids, image_codes):
        """Match log-odds (B,) of whole (caption, image) pairs."""
        itm = self.match_logits(text_ids, image_codes)
        return itm[:, 1] - itm[:, 0]

    def token_logits(self, text_ids, image_codes) -> dict:
        """Vocabulary logits at every position: {'text': (B, L, text_vocab), 'image': (B, N, codebook_size)}.

        Text positions holding MASK (4) and image positions holding `image_mask_id` are what one
        MaskGIT decoding step samples from."""
        hidden = self(text_ids, image_codes)["hidden"]
        text_table = self.text_embed if self.tie_heads else self.text_out
        image_table = self.image_embed if self.tie_heads else self.image_out
        def logits(h, table, bias, size):
            return (h @ table[:bias.shape[0]].T + bias)[..., :size]
        return {"text": logits(hidden[:, 1:1 + self.max_text_len], text_table, self.text_bias, self.text_vocab),
                "image": logits(hidden[:, 2 + self.max_text_len:], image_table, self.image_bias, self.codebook_size)}

    def _needs_itc(self):
        if not self.itc_dim:
            raise ValueError("this model has no ITC heads (trained with model.itc_dim = 0)")


# --- the VQ image tokenizer ------------------------------------------------------------------------

class Conv(nn.Module):
    """NHWC convolution with a flax HWIO kernel and flax's 'SAME' padding."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.kernel, self.bias = _zeros(k, k, cin, cout), _zeros(cout)

    def forward(self, x):
        k, s = self.kernel.shape[0], self.stride
        pads = []
        for size in (x.shape[2], x.shape[1]):  # F.pad lists the last dimension first: W, then H
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        x = F.pad(x.permute(0, 3, 1, 2), pads)
        return F.conv2d(x, self.kernel.permute(3, 2, 0, 1), self.bias, stride=s).permute(0, 2, 3, 1)


class GroupNorm(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
        self.scale, self.bias = nn.Parameter(torch.ones(channels)), _zeros(channels)

    def forward(self, x):
        y = F.group_norm(x.permute(0, 3, 1, 2), self.groups, self.scale, self.bias, eps=1e-6)
        return y.permute(0, 2, 3, 1)


class _Named(nn.Module):
    """Children named as flax's compact modules name them (Conv_0, Conv_1, ResBlock_0, GroupNorm_0, ...),
    so the state dict's names are the export's. `_add` registers one and returns its name."""

    def __init__(self):
        super().__init__()
        self._counts: dict[str, int] = {}

    def _add(self, module: nn.Module) -> str:
        kind = type(module).__name__
        name = f"{kind}_{self._counts.get(kind, 0)}"
        self._counts[kind] = self._counts.get(kind, 0) + 1
        self.add_module(name, module)
        return name

    def _run(self, names, x):
        for name in names:
            x = getattr(self, name)(x)
        return x


class ResBlock(_Named):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.first = [self._add(GroupNorm(cin)), self._add(Conv(cin, cout, 3))]
        self.second = [self._add(GroupNorm(cout)), self._add(Conv(cout, cout, 3))]
        self.skip = [self._add(Conv(cin, cout, 1))] if cin != cout else []

    def forward(self, x):
        norm, conv = self.first
        h = getattr(self, conv)(F.silu(getattr(self, norm)(x)))
        norm, conv = self.second
        h = getattr(self, conv)(F.silu(getattr(self, norm)(h)))
        return self._run(self.skip, x) + h


def space_to_depth(x, p: int):
    b, h, w, c = x.shape
    return x.reshape(b, h // p, p, w // p, p, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h // p, w // p, p * p * c)


def depth_to_space(x, p: int):
    b, h, w, c = x.shape
    return x.reshape(b, h, w, p, p, c // (p * p)).permute(0, 1, 3, 2, 4, 5).reshape(b, h * p, w * p, c // (p * p))


UPSAMPLE = "upsample"  # a step of the decoder with no parameters


class Encoder(_Named):
    def __init__(self, c: dict):
        super().__init__()
        self.patch, chans = c["patch"], list(c["channels"])
        self.steps = [self._add(Conv(3 * self.patch ** 2, chans[0], 3))]
        for level, ch in enumerate(chans):
            self.steps += [self._add(ResBlock(ch, ch)) for _ in range(c["res_blocks"])]
            if level < len(chans) - 1:
                self.steps.append(self._add(Conv(ch, chans[level + 1], 4, stride=2)))
        self.norm, self.out = self._add(GroupNorm(chans[-1])), self._add(Conv(chans[-1], c["code_dim"], 1))

    def forward(self, x):
        x = self._run(self.steps, space_to_depth(x, self.patch) if self.patch > 1 else x)
        return getattr(self, self.out)(F.silu(getattr(self, self.norm)(x)))


class Decoder(_Named):
    def __init__(self, c: dict):
        super().__init__()
        self.patch, chans = c["patch"], list(reversed(c["channels"]))
        self.steps = [self._add(Conv(c["code_dim"], chans[0], 3))]
        for level, ch in enumerate(chans):
            self.steps += [self._add(ResBlock(ch, ch)) for _ in range(c["res_blocks"])]
            if level < len(chans) - 1:
                self.steps += [UPSAMPLE, self._add(Conv(ch, chans[level + 1], 3))]
        self.norm = self._add(GroupNorm(chans[-1]))
        self.out = self._add(Conv(chans[-1], 3 * self.patch ** 2, 3))

    def forward(self, z):
        x = z
        for step in self.steps:
            if step == UPSAMPLE:  # nearest, as jax.image.resize(..., "nearest") at exactly 2x
                x = x.repeat_interleave(2, 1).repeat_interleave(2, 2)
            else:
                x = getattr(self, step)(x)
        x = getattr(self, self.out)(F.silu(getattr(self, self.norm)(x)))
        return depth_to_space(x, self.patch) if self.patch > 1 else x


def _unit(x, eps: float = 1e-6):
    return x * torch.rsqrt(x.square().sum(-1, keepdim=True) + eps)


class VQ(nn.Module):
    """uint8 faces (B, S, S, 3) <-> codes (B, N) through the l2-normalised codebook."""

    def __init__(self, config: dict):
        super().__init__()
        self.grid = config["image_size"] // config["downsample"]
        self.encoder, self.decoder = Encoder(config), Decoder(config)
        self.codebook = _zeros(config["codebook_size"], config["code_dim"])

    def code_scores(self, images_uint8):
        """(B, g, g, codebook_size) cosine of each cell's encoding to every code."""
        z = _unit(self.encoder(images_uint8.float() / 127.5 - 1.0))
        return torch.einsum("bhwd,kd->bhwk", z, _unit(self.codebook))

    def encode(self, images_uint8):
        return self.code_scores(images_uint8).argmax(-1).reshape(images_uint8.shape[0], -1)

    def decode_float(self, codes):
        """(B, N) codes -> (B, S, S, 3) images in [-1, 1], before rounding to uint8."""
        return self.decoder(_unit(self.codebook)[codes.reshape(-1, self.grid, self.grid)])

    def decode(self, codes):
        return ((self.decode_float(codes) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


# --- loading an export ------------------------------------------------------------------------------

def load_checked(module: nn.Module, path: str) -> nn.Module:
    """Loads the safetensors file at `path` into `module`: every name present, no stray one, every shape
    as the config builds it; anything else is one ExportError naming the tensors."""
    try:
        stored = load_file(path)
    except Exception as e:  # safetensors' errors for cut or foreign files name no file
        raise export_format.ExportError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    expected = module.state_dict()
    export_format.raise_mismatches(path, export_format.tensor_mismatches(
        {k: (tuple(v.shape), None) for k, v in stored.items()},
        {k: (tuple(v.shape), None) for k, v in expected.items()}, "its config"), "its config")
    module.load_state_dict({k: v.float() for k, v in stored.items()}, strict=True)
    return module.eval()


class TorchExport:
    """An export in PyTorch: `model` (GPTFace), `vq` (VQ), `text_ids` (captions -> ids), the manifest."""

    def __init__(self, directory: str):
        self.directory = directory
        self.manifest = export_format.read_manifest(directory)
        with open(os.path.join(directory, "config.json")) as f:
            self.config = json.load(f)
        with open(os.path.join(directory, "vq_config.json")) as f:
            self.vq_config = json.load(f)
        self.model = load_checked(GPTFace.from_export_config(self.config, int(self.manifest["image_grid"])),
                                  os.path.join(directory, "params.safetensors"))
        self.vq = load_checked(VQ(self.vq_config), os.path.join(directory, "vq_params.safetensors"))
        self.text_ids = export_format.CaptionIds(directory, self.manifest["max_text_len"])


def load(directory: str) -> TorchExport:
    return TorchExport(directory)
