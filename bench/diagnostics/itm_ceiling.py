"""How well can the clean ITM split be judged, and held-out pairs retrieved, from what the image tokens keep?

    python bench/diagnostics/itm_ceiling.py SYNTH_DIR [VQ_WORKDIR ...] [--no-rendered] [--max-train N] [--steps N]

A reader that knew the captions' grammar perfectly and only had to look at the face: the pixel
judge (gptface_jax.evals.attribute_classifier) predicts every fact, and a pair is scored by
sum over the caption's stated facts of log P(fact holds | image). The judge is fitted twice, on the
rendered faces and on each tokenizer's VQ reconstructions (what the transformer's image tokens stand for), and
scored on the same held-out clean pairs that `gptface train` evaluates (eval_pairs.clean_pairs over
the first 1000 test faces). Accuracy uses a threshold chosen on the other half of the pairs.

Retrieval: recall@5 both ways among the first 500 test faces, the in-loop retrieval evaluator's protocol
(identical captions are each other's positives). A pair scores the pointwise mutual information of its
facts, sum of log P(fact | image) - log P(fact), so that a caption is not ranked up for stating little.
The header line reads each fact off the face's own labels instead (true +1, false -1): the data's ceiling.
"""
import argparse

import numpy as np

from data_pipelines.shards import ShardSource
from data_pipelines.synthfaces.attributes import ATTRIBUTES, HAIR_COLOURS
from data_pipelines.synthfaces.captions import mentioned_facts
from data_pipelines.synthfaces.eval_pairs import clean_pairs, visible_verdict
from gptface_jax.evals import attribute_classifier, downstream, itm_eval
from gptface_jax.evals.evaluators import chance_recall, recall_at
from gptface_jax.serving import image_tokenizer

_BALD, _HAT = ATTRIBUTES.index("bald"), ATTRIBUTES.index("hat")


def fact_log_probability(fact, attributes: np.ndarray, expression: np.ndarray, hair: np.ndarray) -> float:
    """log P(fact holds) under one face's judge probabilities; hair colour counts as true when hidden."""
    key, value = fact
    if key == "expression":
        p = expression[value]
    elif key == "hair_colour":
        hidden = 1.0 - (1.0 - attributes[_BALD]) * (1.0 - attributes[_HAT])
        p = hidden + (1.0 - hidden) * hair[value]
    else:
        q = attributes[ATTRIBUTES.index(key)]
        p = q if value else 1.0 - q
    return float(np.log(max(p, 1e-6)))


def pair_scores(judged: dict, facts: list, pairs: dict) -> np.ndarray:
    return np.array([sum(fact_log_probability(f, judged["attributes"][i], judged["expression"][i],
                                              judged["hair_colour"][i]) for f in facts[j])
                     for i, j in zip(pairs["image"], pairs["caption"])])


def pointwise_information(judged: dict, facts: list, faces: int) -> np.ndarray:
    """(images, captions) sum over each caption's facts of log P(fact | image) - log P(fact) among `faces`."""
    scores = np.zeros((faces, faces))
    for j in range(faces):
        logp = np.array([[fact_log_probability(f, judged["attributes"][i], judged["expression"][i],
                                               judged["hair_colour"][i]) for f in facts[j]] for i in range(faces)])
        if logp.size:  # (images, facts); the prior of each fact is its mean probability over the images
            scores[:, j] = (logp - np.log(np.exp(logp).mean(0))).sum(1)
    return scores


def retrieval_row(scores: np.ndarray, positive: np.ndarray, k: int = 5) -> str:
    """'i2t / t2i' recall@k of (images, captions) scores, ties broken at random (mean of 10 draws)."""
    noise = np.random.default_rng(0).random((10, *scores.shape)) * 1e-6
    i2t = np.mean([recall_at(scores + z, positive, k) for z in noise])
    t2i = np.mean([recall_at((scores + z).T, positive, k) for z in noise])
    return f"{i2t:.3f} / {t2i:.3f}"


def held_out_accuracy(scores: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """Two-fold: each half is thresholded where the other half's accuracy is best."""
    order = np.random.default_rng(seed).permutation(len(scores))
    halves, correct = (order[::2], order[1::2]), 0
    for fit, test in (halves, halves[::-1]):
        candidates = np.unique(scores[fit])
        best = max(candidates, key=lambda t: ((scores[fit] >= t) == labels[fit]).mean())
        correct += int(((scores[test] >= best) == labels[test]).sum())
    return correct / len(scores)


def main(data: str, vq_dirs: list[str], rendered: bool, max_train: int, steps: int) -> None:
    size = image_tokenizer.load(vq_dirs[0]).config.image_size if vq_dirs else 64
    train = downstream.load_labelled(data, "train", size, max_train)
    test = downstream.load_labelled(data, "test", size, 1000)
    source = ShardSource(data, "test")
    captions = [source[i]["caption"] for i in range(len(test["images"]))]
    captions = [c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in captions]
    pairs = clean_pairs(captions, test["attributes"], test["hair_colour"], test["expression"])
    facts = [sorted(mentioned_facts(c)) for c in captions]
    faces = min(500, len(captions))
    positive = np.array([[a == b for b in captions[:faces]] for a in captions[:faces]])
    truth = np.array([[np.subtract(*visible_verdict(facts[j], test["attributes"][i], test["hair_colour"][i],
                                                   test["expression"][i])) for j in range(faces)]
                      for i in range(faces)], float)

    views = {"rendered faces": lambda: (train["images"], test["images"])} if rendered else {}
    for vq_dir in vq_dirs:
        views[f"VQ reconstructions ({vq_dir})"] = (
            lambda vq: lambda: (vq.decode(vq.encode(train["images"])), vq.decode(vq.encode(test["images"]))))(
                image_tokenizer.load(vq_dir))
    print(f"{len(pairs['label'])} clean pairs from {len(captions)} held-out faces; judges fitted on "
          f"{len(train['images'])} faces, {steps} steps; recall@5 among {faces} faces: chance "
          f"{chance_recall(positive, 5):.3f}, facts read off the true labels {retrieval_row(truth, positive)}\n")
    print("| judge trained and scored on | clean ITM accuracy (held-out threshold) | AUC | "
          "male | young | smiling | expression | hair colour | recall@5 i2t / t2i |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, view in views.items():
        fit_images, test_images = view()
        judge = attribute_classifier.fit(fit_images, train["attributes"], train["expression"], train["hair_colour"],
                                         train["attribute_names"], train["expression_names"], list(HAIR_COLOURS), steps)
        judged = judge.predict_all(test_images)
        acc = judge.accuracy(test_images, test["attributes"], test["expression"], test["hair_colour"])
        scores = pair_scores(judged, facts, pairs)
        print(f"| {name} | {held_out_accuracy(scores, pairs['label']):.3f} | "
              f"{itm_eval.auc(scores, pairs['label']):.3f} | {acc['attributes']['male']:.3f} | "
              f"{acc['attributes']['young']:.3f} | {acc['attributes']['smiling']:.3f} | "
              f"{acc['expression_accuracy']:.3f} | {acc['hair_colour_accuracy']:.3f} | "
              f"{retrieval_row(pointwise_information(judged, facts, faces), positive)} |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", help="a SynthFaces dataset directory (train + test splits)")
    parser.add_argument("vq", nargs="*", help="VQ tokenizer workdirs whose reconstructions to judge")
    parser.add_argument("--no-rendered", dest="rendered", action="store_false", help="skip the rendered-faces judge")
    parser.add_argument("--max-train", type=int, default=20000)
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args()
    main(args.data, args.vq, args.rendered, args.max_train, args.steps)
