"""Does a pre-trained GPTFace read the face's sex from the image when it fills in a caption?

Held-out captions with exactly one subject noun (man/guy/gentleman/dude vs woman/lady/gal): that
noun is masked, the rest of the caption shown; the score is log P(male nouns) - log P(female
nouns) at that position. Prints its AUC against the true label, with the true images and with the
images shuffled (a model that ignores the image scores both alike).

    python bench/diagnostics/subject_noun_auc.py WORKDIR [STEP]
"""
import sys, json
import jax, jax.numpy as jnp, numpy as np, flax.linen as nn, ml_collections
from gptface_jax.checkpoints import Checkpointer
from gptface_jax.model import GPTFace, ModelConfig, text_hidden
from gptface_jax.itm_eval import auc
from data_pipelines.shards import ShardSource
from data_pipelines.text_tokenizer import MASK, TextTokenizer
from data_pipelines.synthfaces.attributes import ATTRIBUTES
workdir = sys.argv[1]
config = ml_collections.ConfigDict(json.load(open(f"{workdir}/config.json")))
model = GPTFace(ModelConfig.from_config(config)); mc = model.config
abstract = jax.eval_shape(lambda: nn.meta.unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((1, mc.max_text_len), jnp.int32), jnp.zeros((1, mc.image_grid ** 2), jnp.int32))))
ck = Checkpointer(workdir, keep=100, async_save=False)
step = int(sys.argv[2]) if len(sys.argv) > 2 else None
params = ck.restore_part({"params": abstract}, jax.sharding.SingleDeviceSharding(jax.devices()[0]), step=step)["params"]
tok = TextTokenizer(f"{config.data.pretokenized}/text_tokenizer.model")
male = {w: tok.sp.encode(w) for w in ("man", "guy", "gentleman", "dude")}
female = {w: tok.sp.encode(w) for w in ("woman", "lady", "gal")}
single = lambda d: [v[0] for v in d.values() if len(v) == 1]
M, F = single(male), single(female)
src = ShardSource(config.data.pretokenized, "test")
rows, labels, images = [], [], []
for i in range(len(src)):
    r = src[i]; t = np.asarray(r["text_ids"]).astype(np.int32)
    hits = np.flatnonzero(np.isin(t, M + F))
    if len(hits) == 1:
        rows.append((t, hits[0])); labels.append(int(r["attributes"][ATTRIBUTES.index("male")])); images.append(np.asarray(r["image_codes"]).astype(np.int32))
text = np.stack([t for t, _ in rows]); pos = np.array([h for _, h in rows]); labels = np.array(labels); images = np.stack(images)
inp = text.copy(); inp[np.arange(len(inp)), pos] = MASK
def score(img):
    out = model.apply(params, jnp.asarray(inp), jnp.asarray(img))
    h = text_hidden(out["hidden"], mc)[jnp.arange(len(inp)), pos]
    lp = jax.nn.log_softmax(model.apply(params, h, method=GPTFace.text_logits), -1)
    return np.asarray(jax.scipy.special.logsumexp(lp[:, jnp.asarray(M)], -1) - jax.scipy.special.logsumexp(lp[:, jnp.asarray(F)], -1))
s = score(images); sh = score(images[np.random.default_rng(0).permutation(len(images))])
print(f"step {step}: {len(labels)} captions with one subject noun; AUC(male | true image) {auc(s, labels):.3f}  shuffled images {auc(sh, labels):.3f}; mean P(male nouns) gap {float(s[labels==1].mean() - s[labels==0].mean()):.3f}")
