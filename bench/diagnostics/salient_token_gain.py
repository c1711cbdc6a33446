"""Which attribute words does a pre-trained GPTFace read from the image? Per salient token.

Held-out captions with the run's salient tokens (its `salient_tokens.json`, or the top 40 by mutual
information with the image codes) hidden and the rest shown, as in the salient warm-up: for each
token, the mean log-probability of the true token with the face's own image minus with another
face's image (nats; 0 for a model that ignores the image), and how often it occurs.

    python bench/diagnostics/salient_token_gain.py WORKDIR [STEP]
"""
import json, os, sys
import jax, jax.numpy as jnp, numpy as np
from data_pipelines import informative_tokens
from data_pipelines.shards import ShardSource
from data_pipelines.text_tokenizer import MASK, NUM_SPECIAL, TextTokenizer
from gptface_jax import inference
from gptface_jax.model import GPTFace, text_hidden

workdir = sys.argv[1]
step = int(sys.argv[2]) if len(sys.argv) > 2 else None
config, model, params = inference.load_params(workdir, step); mc = model.config
tok = TextTokenizer(f"{config.data.pretokenized}/text_tokenizer.model")
if os.path.exists(f"{workdir}/salient_tokens.json"):
    salient = np.array(json.load(open(f"{workdir}/salient_tokens.json"))["ids"])
else:
    salient = informative_tokens.from_source(ShardSource(config.data.pretokenized, "train"), sample_size=20000,
                                             vocab_size=config.text.vocab_size, codebook_size=config.vq.codebook_size,
                                             num_special=NUM_SPECIAL, k=40)
test = ShardSource(config.data.pretokenized, "test")
text = np.stack([np.asarray(test[i]["text_ids"], np.int32) for i in range(len(test))])
image = np.stack([np.asarray(test[i]["image_codes"], np.int32) for i in range(len(test))])
hidden = np.isin(text, salient) & (text != 0)


@jax.jit
def logp(img):
    out = model.apply(params, jnp.where(hidden, MASK, text), img)
    lp = jax.nn.log_softmax(model.apply(params, text_hidden(out["hidden"], mc), method=GPTFace.text_logits), -1)
    return jnp.take_along_axis(lp, jnp.asarray(text)[..., None], -1)[..., 0]


own, other = np.asarray(logp(image)), np.asarray(logp(np.roll(image, 1, axis=0)))
print(f"step {step or 'latest'}: {hidden.sum()} hidden salient tokens in {len(text)} held-out captions; "
      f"mean gain {float((own - other)[hidden].mean()):+.4f} nats")
rows = []
for t in salient:
    at = hidden & (text == t)
    if at.sum():
        rows.append((float((own - other)[at].mean()), int(at.sum()), tok.sp.id_to_piece(int(t)), float(np.exp(own[at]).mean())))
for gain, n, piece, p in sorted(rows, reverse=True):
    print(f"  {piece:>14s}  n={n:4d}  gain {gain:+.3f}  P(true | own image) {p:.3f}")
