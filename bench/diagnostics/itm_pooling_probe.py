"""Where in the network does a pre-trained GPTFace know that a caption does not match the face?

Frozen features of (caption, image) pairs, whole inputs, no masking, pooled four ways: the [CLS]
vector (what the ITM head reads), the mean and the elementwise max over caption positions, and the
mean over the caption's salient-word positions. A logistic probe per pooling is fitted on training
pairs: own captions; swap negatives, with one salient word replaced by a partner; and other
faces' captions. The weight decay is chosen on a validation part. The probe is then scored on
the held-out clean and weak ITM splits. A probe that beats the ITM head shows the information is
there and the head does not reach it.

    python bench/diagnostics/itm_pooling_probe.py WORKDIR [STEP] [TRAIN_FACES]
"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from data_pipelines import informative_tokens
from data_pipelines.itm import partner_table, swap_words
from data_pipelines.shards import ShardSource
from data_pipelines.text_tokenizer import PAD, TextTokenizer
from gptface_jax import inference, itm_eval, probe
from gptface_jax.model import text_hidden

workdir = sys.argv[1]
step = int(sys.argv[2]) if len(sys.argv) > 2 else None
n_train = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
config, model, params = inference.load_params(workdir, step); mc = model.config
salient = np.array(json.load(open(f"{workdir}/salient_tokens.json"))["ids"])
vocab = config.text.vocab_size
word_start = TextTokenizer(f"{config.data.pretokenized}/text_tokenizer.model").word_starts(vocab)
text, image = (a.astype(np.int32) for a in informative_tokens.load_sample(ShardSource(config.data.pretokenized, "train"), n_train))
lengths = (text != PAD).sum(1)
table = partner_table(informative_tokens.swap_partners(text, salient, word_start), vocab)
rng = np.random.default_rng(0)
swapped_text, swapped = swap_words(text, lengths, np.ones(len(text), bool), table, word_start, rng)
pair_text = np.concatenate([text, swapped_text[swapped], np.roll(text, 1, axis=0)])
pair_image = np.concatenate([image, image[swapped], image])
pair_label = np.concatenate([np.ones(len(text)), np.zeros(swapped.sum()), np.zeros(len(text))]).astype(np.int32)


@jax.jit
def pooled(t, i):
    h = model.apply(params, t, i)["hidden"]
    th = text_hidden(h, mc)
    real = (t != PAD)[..., None]
    sal = jnp.isin(t, jnp.asarray(salient))[..., None] & real
    mean = lambda m: (th * m).sum(1) / jnp.maximum(m.sum(1), 1)  # noqa: E731
    return {"cls": h[:, 0], "text_mean": mean(real), "text_max": jnp.where(real, th, -1e9).max(1),
            "salient_mean": mean(sal)}


def features(t, i):
    parts = [pooled(jnp.asarray(t[k:k + 200]), jnp.asarray(i[k:k + 200])) for k in range(0, len(t), 200)]
    return {name: np.concatenate([np.asarray(p[name]) for p in parts]) for name in parts[0]}


train = features(pair_text, pair_image)
order = rng.permutation(len(pair_label))
fit, val = order[: int(0.8 * len(order))], order[int(0.8 * len(order)):]
sets = itm_eval.eval_sets(ShardSource(config.data.pretokenized, "test"), config.evals.itm.max_examples)
print(f"step {step or 'latest'}: {len(pair_label)} training pairs ({swapped.sum()} swap negatives)")
for name in ("clean", "weak"):
    if name not in sets:
        continue
    s = sets[name]
    test = features(s["text_ids"], s["image_codes"])
    row = []
    for pool in train:
        out = probe.probe_attributes(probe.Split(train[pool][fit], pair_label[fit, None]),
                                     probe.Split(train[pool][val], pair_label[val, None]),
                                     probe.Split(test[pool], s["label"][:, None]))
        row.append(f"{pool} {float(out['accuracy'][0]):.3f}")
    print(f"  {name} ({len(s['label'])} pairs) probe accuracy: " + ", ".join(row))
