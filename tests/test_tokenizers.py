"""Tokenizers: SentencePiece round trips and fixed ids; the VQ model's shapes, gradients, restarts,
training, resume and pre-tokenized shards."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipelines import text_tokenizer as tt
from data_pipelines.errors import DataError, OptionError
from data_pipelines.shards import ShardSource
from data_pipelines.synthfaces.attributes import rng_for, sample_face
from data_pipelines.synthfaces.captions import make_caption
from gptface_jax.generate import regions
from gptface_jax.models.vq import VQConfig, VQModel
from gptface_jax.runtime import config_lib, optimizer
from gptface_jax.serving import image_tokenizer
from gptface_jax.train import vq_train

EXTRA_TEXT = ["Portrait d'une femme souriante, café crème", "日本語のキャプション、笑顔の女性", "Ελληνικά πρόσωπο",
              "Ünterwegs in Berlin 😀", "literal <mask> and [CLS] in a caption"]


@pytest.fixture(scope="module")
def text_model():
    captions = [make_caption(sample_face(0, i), rng_for(0, i, 2)).text for i in range(1500)]
    return tt.TextTokenizer(tt.train(captions + EXTRA_TEXT, vocab_size=600))


def test_special_ids_are_the_documented_ones(text_model):
    assert [text_model.sp.id_to_piece(i) for i in range(5)] == ["<pad>", "<unk>", "<cls>", "<sep>", "<mask>"]
    assert (tt.PAD, tt.UNK, tt.CLS, tt.SEP, tt.MASK) == (0, 1, 2, 3, 4)
    ids, _ = text_model.encode(["literal <mask> and <cls> <pad> typed by a user"], 64)
    assert not np.isin(ids[ids != tt.PAD], [tt.UNK, tt.CLS, tt.SEP, tt.MASK]).any()  # text never makes specials


def test_round_trip_any_language(text_model):
    texts = EXTRA_TEXT + ["IMG_2041.JPG | a young man with a beard", "  two  spaces kept "]
    ids, lengths = text_model.encode(texts, 128)
    assert ids.shape == (len(texts), 128) and ids.dtype == np.int32
    assert (lengths < 128).all()
    assert text_model.decode(ids) == texts


def test_fixed_length_truncates_and_pads(text_model):
    ids, lengths = text_model.encode(["a", "a young woman with bangs, wearing glasses and smiling " * 5], 12)
    assert ids.shape == (2, 12)
    assert lengths[1] == 12 and (ids[0, lengths[0]:] == tt.PAD).all()


def test_default_tokenizer_keeps_attribute_words_whole():
    """At the size the configs ask for, unigram stops short of it and splits "young", "black", "older";
    the default (BPE) gives every piece asked for and keeps the words whole (docs/experiments.md, "BPE by default")."""
    captions = [make_caption(sample_face(0, i), rng_for(0, i, 2)).text for i in range(1500)]
    words = ("young", "older", "elderly", "black", "brown", "red", "blond", "grey", "man", "woman", "lady",
             "smiling", "happy", "sad", "angry", "surprised", "neutral")

    def whole(tok):
        return {w for w in words if tok.sp.encode(" " + w, out_type=str)[-1:] == ["\u2581" + w]}

    default = tt.TextTokenizer(tt.train(captions, vocab_size=1000))
    unigram = tt.TextTokenizer(tt.train(captions, vocab_size=1000, model_type="unigram"))
    assert default.vocab_size == 1000 and unigram.vocab_size < 1000
    assert whole(default) == set(words)
    assert {"young", "black", "older"}.isdisjoint(whole(unigram))


def test_tokenizer_that_does_not_fit_the_config_is_rejected(text_model):
    with pytest.raises(DataError, match=rf"vocab size {text_model.vocab_size} but the config's text.vocab_size=100"):
        text_model.check_fits(100)
    with pytest.raises(ValueError, match="must exceed 261"):
        tt.train(["a b c"], vocab_size=200)
    # enough for the byte pieces, not for every character these captions use: said in our words
    alphabet = "abcdefghijklmnopqrstuvwxyzäöüßéèêëñçøåæœ"
    captions = [" ".join(alphabet[(i * 7 + j) % len(alphabet)] * 3 for j in range(9)) for i in range(200)]
    with pytest.raises(OptionError, match=r"vocab_size=270 is too small for these captions: .* need \d+"):
        tt.train(captions, vocab_size=270)


def _tiny_vq(**kw) -> VQConfig:
    return VQConfig(**{"image_size": 32, "downsample": 8, "codebook_size": 16, "code_dim": 8, "channels": (8, 16),
                       "patch": 4, "res_blocks": 1, "beta": 0.25, "dtype": "float32", **kw})


@pytest.mark.slow
def test_encode_decode_shapes():
    for cfg, grid in ((_tiny_vq(), 4), (VQConfig(image_size=64, downsample=16, codebook_size=32, code_dim=8,
                                                 channels=(8, 8, 16, 16, 16), patch=1, res_blocks=1, beta=0.25,
                                                 dtype="float32"), 4)):
        model = VQModel(cfg)
        x = jnp.zeros((2, cfg.image_size, cfg.image_size, 3))
        params = model.init(jax.random.PRNGKey(0), x)["params"]
        codes = model.apply({"params": params}, x, method=VQModel.encode)
        assert codes.shape == (2, grid, grid) and codes.dtype == jnp.int32
        assert int(codes.max()) < cfg.codebook_size
        out = model.apply({"params": params}, codes, method=VQModel.decode_codes)
        assert out.shape == x.shape


def _encoded_shape_and_size(variant: str, size: int):
    from experiments import vq as vq_experiment
    config = vq_experiment.get_config(variant)
    vq_train.validate(config)
    model = VQModel(vq_train.vq_config(config))
    x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
    params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)))["params"])
    codes = jax.eval_shape(lambda p, x: model.apply({"params": p}, x, method=VQModel.encode), params, x)
    return codes.shape, sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def test_base_shapes_without_running_them():
    shape, size = _encoded_shape_and_size("base", 256)
    assert shape == (2, 16, 16)
    assert 20e6 < size < 200e6


def test_tiny16_gives_the_base_grid_at_64_px():
    assert _encoded_shape_and_size("tiny16", 64)[0] == (2, 16, 16)
    assert _encoded_shape_and_size("tiny", 64)[0] == (2, 8, 8)


@pytest.mark.slow
def test_straight_through_gradients_reach_the_encoder():
    model = VQModel(_tiny_vq())
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 32, 32, 3), minval=-1, maxval=1)
    params = model.init(jax.random.PRNGKey(0), x)["params"]

    def recon_loss(p):
        recon, *_ = model.apply({"params": p}, x)
        return jnp.mean(jnp.square(recon - x))

    grads = jax.grad(recon_loss)(params)
    enc = jax.tree.leaves(grads["encoder"])
    assert all(np.isfinite(g).all() for g in enc)
    assert sum(float(jnp.abs(g).sum()) for g in enc) > 0
    # without the straight-through trick the reconstruction could not move the encoder at all
    assert float(jnp.abs(grads["codebook"]).sum()) == 0.0  # codebook learns from its own loss


def test_dead_codes_are_restarted():
    k, d = 8, 4
    codebook = jnp.ones((k, d))
    usage = jnp.array([0.5, 0.5, 0, 0, 0, 0, 0, 0], jnp.float32)
    z = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 3, d))
    new, new_usage, n = vq_train.restart_dead_codes(codebook, usage, z, jax.random.PRNGKey(1), dead_usage=0.03)
    assert int(n) == 6
    np.testing.assert_array_equal(new[:2], codebook[:2])
    flat = np.asarray(z).reshape(-1, d)
    for row in np.asarray(new[2:]):
        assert any(np.allclose(row, f) for f in flat)
    assert np.allclose(new_usage[2:], 1.0 / k)


def _vq_config(tmp_path, **overrides):
    args = ["--config", "experiments/vq.py:tiny", "--config.data.image_size=32", "--config.data.num_train=64",
            "--config.data.num_test=16", "--config.vq.codebook_size=16", "--config.vq.code_dim=8",
            "--config.vq.channels=(8,16)", "--config.vq.res_blocks=1", "--config.train.batch_size=16",
            "--config.train.warmup_steps=2", "--config.train.log_every=2", "--config.evals.reconstruction.every=1000",
            "--config.train.checkpoint_every=3", "--config.vq.restart_every=2", "--config.train.time_budget_s=0"]
    args += [f"--config.{k}={v}" for k, v in overrides.items()]
    return vq_train.validate(config_lib.load(args), jax.device_count())


@pytest.mark.slow
def test_training_learns_and_resumes_exactly(tmp_path):
    full = _vq_config(tmp_path, **{"train.steps": 6, "data.dir": ""})
    scores = vq_train.train(full, str(tmp_path / "full"))
    from gptface_jax.runtime.metrics import read_metrics
    rows = [r for r in read_metrics(str(tmp_path / "full")) if "loss" in r]
    assert rows[-1]["loss"] < rows[0]["loss"]  # the loss falls
    assert os.path.exists(tmp_path / "full" / "reconstructions.png")
    assert 0 < scores["eval_code_usage"] <= 1 and scores["eval_images"] == 16
    # preempted after the step-3 checkpoint, restarted with the same command: identical parameters
    import shutil
    shutil.copytree(tmp_path / "full", tmp_path / "resumed")
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "6")
    vq_train.train(full, str(tmp_path / "resumed"))
    a, b = image_tokenizer.load(str(tmp_path / "full")), image_tokenizer.load(str(tmp_path / "resumed"))
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
    fresh = image_tokenizer.load(str(tmp_path / "full"))
    assert any(not np.allclose(np.asarray(x), np.asarray(y)) for x, y in
               zip(jax.tree.leaves(fresh.params), jax.tree.leaves(vq_train.init_state(
                   VQModel(a.config), optimizer.make_optimizer(full), full, jax.random.PRNGKey(0))["params"])))


@pytest.mark.slow
def test_pretokenized_shards_match_direct_calls(tmp_path, text_model):
    from gptface_jax.train.pretokenize import pretokenize
    cfg = _vq_config(tmp_path, **{"train.steps": 2})
    vq_train.train(cfg, str(tmp_path / "vq"))
    model_path = tmp_path / "text.model"
    model_path.write_bytes(text_model.proto)
    out = pretokenize(str(tmp_path / "vq" / "data"), str(model_path), str(tmp_path / "vq"), str(tmp_path / "pre"),
                      max_len=16, batch_size=16)
    vq = image_tokenizer.load(str(tmp_path / "vq"))
    for split in ("train", "test"):
        faces, pre = ShardSource(str(tmp_path / "vq" / "data"), split), ShardSource(out, split)
        assert len(pre) == len(faces)
        by_index = {int(faces[i]["index"]): faces[i] for i in range(len(faces))}
        from data_pipelines.pipeline import decode_jpeg
        for i in range(len(pre)):
            r = pre[i]
            original = by_index[int(r["index"])]
            direct = vq.encode(decode_jpeg(original["image"])[None])[0].reshape(-1)
            np.testing.assert_array_equal(r["image_codes"], direct.astype(np.uint16))
            ids, _ = text_model.encode([original["caption"].decode()], 16)
            np.testing.assert_array_equal(r["text_ids"], ids[0])
            np.testing.assert_array_equal(r["attributes"], original["attributes"])
    assert os.path.exists(os.path.join(out, "text_tokenizer.model"))
    # chunked calls (bounded memory) give the same codes and pixels as one call
    images = np.stack([decode_jpeg(faces[i]["image"]) for i in range(5)])
    np.testing.assert_array_equal(vq.encode(images, batch_size=2), vq.encode(images))
    codes = vq.encode(images)
    np.testing.assert_array_equal(vq.decode(codes, batch_size=3), vq.decode(codes))


@pytest.mark.slow
def test_vq_that_does_not_match_the_config_is_rejected(tmp_path):
    cfg = _vq_config(tmp_path, **{"train.steps": 1, "train.warmup_steps": 0})
    vq_train.train(cfg, str(tmp_path / "vq"))
    vq = image_tokenizer.load(str(tmp_path / "vq"))
    with pytest.raises(DataError, match="codebook size 16 but the config says vq.codebook_size=256"):
        vq.check_matches(image_size=32, codebook_size=256)
    with pytest.raises(DataError, match="image size 32 but the config says data.image_size=64"):
        vq.check_matches(image_size=64, codebook_size=16)
    with pytest.raises(DataError, match="not a VQ workdir"):
        image_tokenizer.load(str(tmp_path))
    # the pre-training config's sizes are checked before any shard is written
    from gptface_jax.train.pretokenize import pretokenize
    model = tmp_path / "text.model"
    captions = [make_caption(sample_face(0, i), rng_for(0, i, 2)).text for i in range(400)]
    model.write_bytes(tt.train(captions, vocab_size=600))
    pretrain = config_lib.load(["--config", "experiments/pretrain.py:tiny"])
    with pytest.raises(DataError, match="VQ tokenizer has image size 32 but the config says data.image_size=64"):
        pretokenize(str(tmp_path / "vq" / "data"), str(model), str(tmp_path / "vq"), str(tmp_path / "out"),
                    config=pretrain)
    assert not (tmp_path / "out").exists()


def test_bad_vq_config_is_reported_before_compiling():
    with pytest.raises(config_lib.ConfigError, match=r"channels=\(8, 16, 32\) needs 2 entries"):
        vq_train.validate(config_lib.load(["--config", "experiments/vq.py:tiny", "--config.vq.channels=(8,16,32)"]))


@pytest.mark.slow
def test_patch_gan_switches_on_after_its_warm_up():
    config = config_lib.load(["--config", "experiments/vq.py:tiny", "--config.data.image_size=32",
                              "--config.vq.codebook_size=16", "--config.vq.code_dim=8", "--config.vq.channels=(8,16)",
                              "--config.loss.gan_weight=0.5", "--config.loss.gan_start=2", "--config.train.steps=10",
                              "--config.train.warmup_steps=1"])
    model = VQModel(vq_train.vq_config(config))
    tx = optimizer.make_optimizer(config)
    state = vq_train.init_state(model, tx, config, jax.random.PRNGKey(0))
    step = jax.jit(vq_train.make_train_step(model, tx, config))
    images = jax.random.randint(jax.random.PRNGKey(1), (4, 32, 32, 3), 0, 256).astype(jnp.uint8)
    key = jax.random.PRNGKey(2)
    before = jax.tree.leaves(state["disc_params"])[0]
    for expected_on in (0.0, 0.0, 1.0, 1.0):
        state, metrics = step(state, images, key)
        assert float(metrics["gan_on"]) == expected_on
        after = jax.tree.leaves(state["disc_params"])[0]
        assert np.array_equal(np.asarray(before), np.asarray(after)) == (expected_on == 0.0)
        before = after
    assert np.isfinite(float(metrics["d_loss"])) and float(metrics["g_loss"]) != 0.0


def test_region_weights_put_the_named_regions_ahead_at_mean_one():
    base = ["--config", "experiments/vq.py:tiny", "--config.data.image_size=32"]
    plain = vq_train.pixel_weights(config_lib.load(base))
    assert plain.shape == (32, 32, 1) and np.all(plain == 1.0)
    config = config_lib.load(base + ["--config.loss.region=mouth,eyes", "--config.loss.region_weight=4"])
    weights = vq_train.pixel_weights(config)[:, :, 0]
    inside = regions.union(["mouth", "eyes"], 32)
    assert np.isclose(weights.mean(), 1.0)
    assert np.allclose(weights[inside] / weights[~inside].max(), 4.0) and np.ptp(weights[~inside]) == 0
    with pytest.raises(config_lib.ConfigError, match=r"unknown regions \['lips'\]"):
        vq_train.validate(config_lib.load(base + ["--config.loss.region=mouth,lips"]))
    with pytest.raises(config_lib.ConfigError, match="region_weight=0.0 must be > 0"):
        vq_train.validate(config_lib.load(base + ["--config.loss.region_weight=0"]))
