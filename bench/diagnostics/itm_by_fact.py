"""Which facts the ITM score reads: held-out clean-split accuracy per contradicted fact.

    python bench/diagnostics/itm_by_fact.py W [STEP]

The clean split's negatives each contradict one or more facts of the image (expression, sex, hair
colour, ...; `eval_pairs.clean_pairs`). A negative counts under every fact it contradicts; one
that contradicts only that fact counts under "only". P(match) < 0.5 is a correct rejection, as in
the trainer's held-out accuracy. Says where the overall accuracy comes from, and what a model
must read to go further.

A second table scores every held-out (image, other caption) pair by the ITC cosine: per fact, the
AUC of captions consistent with the face (at least one true fact, none false) against captions
that contradict only that fact. Many more pairs than the clean split, and no fusion pass.

A third table asks the same of the text tower alone: per fact, a linear probe (`gptface eval
probe`'s protocol) of the ITC text embedding predicting the value a caption states, over the
first 6,000 training captions that state exactly one value of it, with the majority rate beside.
A fact the text embedding does not hold cannot be matched, however well the image side reads it.
"""
import collections
import sys

import jax
import numpy as np

from data_pipelines.shards import ShardSource
from data_pipelines.synthfaces.captions import mentioned_facts
from data_pipelines.synthfaces.eval_pairs import clean_pairs, visible_verdict
from gptface_jax.evals import itm_eval
from gptface_jax.evals import probe as probe_lib
from gptface_jax.models.transformer import GPTFace
from gptface_jax.runtime import sharding
from gptface_jax.serving import inference, scorers

workdir = sys.argv[1]
config, model, params = inference.load_params(workdir, int(sys.argv[2]) if len(sys.argv) > 2 else None)
split = itm_eval.load_split(ShardSource(config.data.pretokenized, "test", verify=False), config.evals.itm.max_examples)
pairs = clean_pairs(split["captions"], split["attributes"], split["hair_colour"], split["expression"])
mesh = sharding.make_mesh(config, jax.devices()[:1])
params = jax.device_put(params, sharding.replicated(mesh))
# the project's match logit (the fusion head plus, with model.itm_similarity, the unimodal similarity)
prob = itm_eval.match_probabilities(scorers.itm_scorer(model, mesh), params, split["text_ids"][pairs["caption"]],
                                    split["image_codes"][pairs["image"]], mesh, config, batch_size=100)
correct = (prob > 0.5) == (pairs["label"] == 1)
hits, totals, only_hits, only_totals = (collections.Counter() for _ in range(4))
for row in np.flatnonzero(pairs["label"] == 0):
    i, j = pairs["image"][row], pairs["caption"][row]
    wrong = {f[0] for f in mentioned_facts(split["captions"][j])
             if visible_verdict([f], split["attributes"][i], split["hair_colour"][i], split["expression"][i])[1]}
    for fact in wrong:
        totals[fact] += 1
        hits[fact] += int(correct[row])
        if len(wrong) == 1:
            only_totals[fact] += 1
            only_hits[fact] += int(correct[row])
positive = pairs["label"] == 1
print(f"clean accuracy {correct.mean():.3f} ({len(correct)} pairs): positives {correct[positive].mean():.3f}, "
      f"negatives {correct[~positive].mean():.3f}")
print("| contradicted fact | negatives | rejected | contradicting only this fact | rejected |")
print("| --- | --- | --- | --- | --- |")
for fact, n in totals.most_common():
    only = f"{only_hits[fact] / only_totals[fact]:.3f}" if only_totals[fact] else "-"
    print(f"| {fact} | {n} | {hits[fact] / n:.3f} | {only_totals[fact]} | {only} |")

if not model.config.itc_dim:
    sys.exit(0)
embed = jax.jit(lambda p, t, c: model.apply(p, t, c, method=GPTFace.itc_embeddings))
put = sharding.global_batch_put(mesh, config)
text_emb, image_emb = sharding.run_in_batches(lambda t, c: embed(params, t, c),
                                              [split["text_ids"], split["image_codes"]], 100, put)
similarity = np.asarray(image_emb) @ np.asarray(text_emb).T
caption_facts = [mentioned_facts(c) for c in split["captions"]]
consistent, only = [], collections.defaultdict(list)
for i in range(len(similarity)):
    for j, facts in enumerate(caption_facts):
        if j == i or not facts:
            continue
        verdicts = [visible_verdict([f], split["attributes"][i], split["hair_colour"][i], split["expression"][i])
                    for f in facts]
        wrong = [f[0] for f, (_, false) in zip(facts, verdicts) if false]
        if not wrong and any(true for true, _ in verdicts):
            consistent.append(similarity[i, j])
        elif len(wrong) == 1:
            only[wrong[0]].append(similarity[i, j])
print(f"\nITC cosine, consistent captions ({len(consistent)} pairs) against captions contradicting one fact")
print("| contradicted fact | pairs | AUC |")
print("| --- | --- | --- |")
for fact, scores in sorted(only.items(), key=lambda kv: -len(kv[1])):
    scores_and_labels = np.concatenate([consistent, scores]), np.r_[np.ones(len(consistent)), np.zeros(len(scores))]
    print(f"| {fact} | {len(scores)} | {itm_eval.auc(*scores_and_labels):.3f} |")

captions = itm_eval.load_split(ShardSource(config.data.pretokenized, "train", verify=False), 6000)
embed_text = jax.jit(lambda p, t: model.apply(p, t, method=GPTFace.itc_text))  # the captions' images are not needed
text_emb = np.asarray(sharding.run_in_batches(lambda t: embed_text(params, t), [captions["text_ids"]], 100, put))
stated = collections.defaultdict(dict)  # fact -> {caption row: stated value}
for row, caption in enumerate(captions["captions"]):
    values = collections.defaultdict(set)
    for key, value in mentioned_facts(caption):
        values[key].add(int(value))
    for key, value in values.items():
        if len(value) == 1:
            stated[key][row] = value.pop()
print("\nITC text embedding: linear probe of the stated value (training captions; chance = majority); a fact")
print("stated with one value only (the attributes: captions state what a face has) is probed as stated or not,")
print("over every caption that states a fact")
print("| stated fact | captions | probe accuracy | majority |")
print("| --- | --- | --- | --- |")
with_facts = np.array(sorted({row for by_row in stated.values() for row in by_row}))
for fact, by_row in sorted(stated.items(), key=lambda kv: -len(kv[1])):
    rows, labels = np.array(list(by_row)), np.array(list(by_row.values()))
    if len(set(labels)) < 2:
        rows, labels = with_facts, np.isin(with_facts, rows).astype(np.int64)
    thirds = np.array_split(np.arange(len(rows)), [len(rows) // 2, 3 * len(rows) // 4])
    parts = [probe_lib.Split(text_emb[rows[t]], labels[t]) for t in thirds]
    accuracy = probe_lib.probe_classes(*parts, classes=int(labels.max()) + 1)["accuracy"]
    print(f"| {fact} | {len(by_row)} | {accuracy:.3f} | {np.bincount(labels).max() / len(labels):.3f} |")
