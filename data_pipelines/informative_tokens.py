"""Which caption tokens carry information about the image? Mutual information, counted from the data.

Crawled captions say a few things about the face ("blond", "beard", "sunglasses") among many words
the image does not determine ("a", "photo", "of"). Scoring the masked-text loss on every token from
the start drowns the image signal before an image-to-text pathway forms (BENCHMARKS.md, session 3),
so pre-training can begin with a warm-up that scores only the tokens found here.

A token's score: for each image code, the mutual information between "the caption has this token"
and "the image has this code" (binary presence, from one co-occurrence matmul over a sample of
examples); summed over the token's `top_codes` most informative codes. No attribute list is needed.
"""
from __future__ import annotations

import numpy as np

from data_pipelines.errors import DataError


def _presence(rows: np.ndarray, size: int, low: int) -> np.ndarray:
    """(N, L) ids -> (N, size) float32 0/1: which ids >= `low` occur in each row."""
    out = np.zeros((len(rows), size), np.float32)
    r, c = np.nonzero((rows >= low) & (rows < size))
    out[r, rows[r, c]] = 1.0
    return out


def mutual_information(text_ids: np.ndarray, image_codes: np.ndarray, vocab_size: int, codebook_size: int,
                       num_special: int) -> np.ndarray:
    """(vocab_size, codebook_size) mutual information (nats) between token presence and code presence."""
    a = _presence(np.asarray(text_ids), vocab_size, num_special)
    b = _presence(np.asarray(image_codes), codebook_size, 0)
    n = float(len(a))
    pa, pb = a.mean(0)[:, None], b.mean(0)[None, :]
    p11 = (a.T @ b) / n
    mi = np.zeros_like(p11)
    # The four cells of each 2x2 table (token present?, code present?) from the marginals and p11.
    for joint, pt, pc in ((p11, pa, pb), (pa - p11, pa, 1 - pb), (pb - p11, 1 - pa, pb), (1 - pa - pb + p11, 1 - pa, 1 - pb)):
        joint = np.maximum(joint, 0.0)
        mi += np.where(joint > 0, joint * np.log(np.maximum(joint, 1e-12) / np.maximum(pt * pc, 1e-12)), 0.0)
    return np.maximum(mi, 0.0)  # float32 rounding of independent pairs can dip a hair below zero


def informative_tokens(text_ids: np.ndarray, image_codes: np.ndarray, *, vocab_size: int, codebook_size: int,
                       num_special: int, k: int, top_codes: int = 10, min_count: int = 5) -> np.ndarray:
    """The `k` token ids whose presence tells most about the image codes, most informative first.

    Tokens seen in fewer than `min_count` captions are left out (their estimate is noise).
    """
    if len(text_ids) != len(image_codes) or not len(text_ids):
        raise DataError(f"informative tokens need matching, non-empty examples; got {len(text_ids)} captions "
                        f"and {len(image_codes)} images")
    mi = mutual_information(text_ids, image_codes, vocab_size, codebook_size, num_special)
    counts = _presence(np.asarray(text_ids), vocab_size, num_special).sum(0)
    score = np.sort(mi, axis=1)[:, -top_codes:].sum(1)
    score = np.where(counts >= min_count, score, -np.inf)
    order = np.argsort(-score, kind="stable")
    return order[: min(k, int(np.isfinite(score).sum()))].astype(np.int64)


def informative_codes(text_ids: np.ndarray, image_codes: np.ndarray, token_ids, *, vocab_size: int,
                      codebook_size: int, num_special: int, top_codes: int = 10) -> dict[int, tuple[int, ...]]:
    """For each token in `token_ids`: the `top_codes` image codes with the highest mutual information
    that occur *more* often when the caption has the token ("blonde" -> the blonde-hair codes), the
    image tokens a caption word should decide."""
    text_ids, image_codes = np.asarray(text_ids), np.asarray(image_codes)
    mi = mutual_information(text_ids, image_codes, vocab_size, codebook_size, num_special)
    a = _presence(text_ids, vocab_size, num_special)
    b = _presence(image_codes, codebook_size, 0)
    lift = (a.T @ b) / len(a) - a.mean(0)[:, None] * b.mean(0)[None, :]   # p(t, c) - p(t) p(c)
    out = {}
    for t in token_ids:
        t = int(t)
        score = np.where(lift[t] > 0, mi[t], -1.0)
        order = np.argsort(-score, kind="stable")[:top_codes]
        chosen = tuple(int(c) for c in order if score[c] > 0)
        if chosen:
            out[t] = chosen
    return out


def load_sample(source, sample_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(text ids, image codes) of the first `sample_size` records of a pre-tokenized ShardSource."""
    n = min(sample_size, len(source))
    records = [source[i] for i in range(n)]
    text = np.stack([np.asarray(r["text_ids"], np.int64) for r in records])
    codes = np.stack([np.asarray(r["image_codes"], np.int64) for r in records])
    return text, codes


def from_source(source, *, sample_size: int, **kwargs) -> np.ndarray:
    """`informative_tokens` over the first `sample_size` records of a pre-tokenized ShardSource."""
    return informative_tokens(*load_sample(source, sample_size), **kwargs)


def _word_presence(text_ids: np.ndarray, token_ids) -> np.ndarray:
    """(N, T) float32 0/1: does each caption contain each of `token_ids`?"""
    return np.stack([(np.asarray(text_ids) == int(t)).any(1) for t in token_ids], 1).astype(np.float32)


def image_lift_similarity(text_ids: np.ndarray, image_codes: np.ndarray, token_ids, *, codebook_size: int) -> np.ndarray:
    """(T, T) cosine between the tokens' code lifts p(t, c) - p(t) p(c): near 1 for synonyms ("hat",
    "cap": the same faces), negative for words that exclude each other ("lady", "guy")."""
    a = _word_presence(text_ids, token_ids)
    b = _presence(np.asarray(image_codes), codebook_size, 0)
    lift = (a.T @ b) / len(a) - a.mean(0)[:, None] * b.mean(0)[None, :]
    unit = lift / np.maximum(np.linalg.norm(lift, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


# Co-occurrence / independence at or below which two words count as exclusive answers (BENCHMARKS.md,
# session 8: hair colours and sex nouns 0.00; cross-fact pairs 0.24 and up; glasses / sunglasses 0.26).
EXCLUSIVE = 0.1


def swap_partners(text_ids: np.ndarray, token_ids, word_start: np.ndarray, *, k: int = 2,
                  min_similarity: float = 0.5, min_whole: float = 0.9, pad: int = 0,
                  image_codes: np.ndarray | None = None, codebook_size: int = 0,
                  max_image_similarity: float = 0.0, max_cooccurrence: float | None = None,
                  symmetric: bool = False) -> dict[int, tuple[int, ...]]:
    """For each whole-word token in `token_ids`: up to `k` others that occur in the same contexts.

    Context: the counts of the token just before, and of the one just after, each occurrence;
    partners are the most similar ones where both the left and the right cosine similarity reach
    `min_similarity` ("blonde" -> "ginger", "grey"; not "glasses"). Swapping a word for a partner
    gives a caption as fluent as the original, so only the image can tell which one is true.
    Only tokens that start a word
    (`word_start[id]`, SentencePiece's leading "▁") and are a whole word in at least `min_whole` of
    their occurrences ("▁bl" of "▁bl" "ack" is not) are paired, so a swap never leaves a stray piece.

    Same contexts also pair synonyms ("hat" -> "cap", "lady" -> "woman"), and a synonym swap is a
    negative that is in fact true. With `image_codes` (the examples' codes), a partner must also
    point at other faces: the cosine of the two tokens' code lifts at most `max_image_similarity`.

    Same contexts and other faces still pair words of different facts ("beard" -> "woman",
    "wearing" -> "with"). Two answers to one question exclude each other within a caption ("man" /
    "woman", "black" / "blond"), while words of different facts appear together. With
    `max_cooccurrence` (e.g. `EXCLUSIVE`), partners must share a caption at most that many times as
    often as independent words would.

    Each word keeps its `k` most similar partners, so the pairing is not mutual: "man" -> "woman",
    but "woman" -> "gentleman", "guy", and no caption ever had "man" swapped in. A word that is
    never swapped in is never a negative, so its mismatch is never taught (run a6 read "woman" on
    male faces but scored "man" alike on both sexes). `symmetric` adds every chosen pair's reverse.
    """
    text_ids = np.asarray(text_ids)
    vocab = len(word_start)
    padded = np.pad(text_ids, ((0, 0), (1, 1)), constant_values=pad)
    centre, left, right = padded[:, 1:-1], padded[:, :-2], padded[:, 2:]
    ends_word = (right == pad) | np.asarray(word_start)[np.clip(right, 0, vocab - 1)]

    def whole_rate(t: int) -> float:
        hit = centre == t
        return float(ends_word[hit].mean()) if hit.any() else 0.0

    ids = [int(t) for t in token_ids if 0 <= int(t) < vocab and word_start[int(t)] and whole_rate(int(t)) >= min_whole]
    if len(ids) < 2:
        return {}
    # Both neighbours must match: the smaller of the left-context and right-context cosines.
    left_counts, right_counts = np.zeros((len(ids), vocab)), np.zeros((len(ids), vocab))
    for row, t in enumerate(ids):
        hit = centre == t
        np.add.at(left_counts[row], left[hit], 1.0)
        np.add.at(right_counts[row], right[hit], 1.0)
    unit = lambda m: m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)  # noqa: E731
    similarity = np.minimum(unit(left_counts) @ unit(left_counts).T, unit(right_counts) @ unit(right_counts).T)
    if image_codes is not None:
        same_faces = image_lift_similarity(text_ids, image_codes, ids, codebook_size=codebook_size)
        similarity = np.where(same_faces > max_image_similarity, -1.0, similarity)
    if max_cooccurrence is not None:
        present = _word_presence(text_ids, ids).astype(np.float64)
        p = present.mean(0)
        together = (present.T @ present) / len(present) / np.maximum(np.outer(p, p), 1e-12)
        similarity = np.where(together > max_cooccurrence, -1.0, similarity)
    np.fill_diagonal(similarity, -1.0)
    partners = {}
    for row, t in enumerate(ids):
        order = np.argsort(-similarity[row], kind="stable")[:k]
        chosen = tuple(ids[j] for j in order if similarity[row, j] >= min_similarity)
        if chosen:
            partners[t] = chosen
    if symmetric:
        for t, chosen in list(partners.items()):
            for p in chosen:
                if t not in partners.get(p, ()):
                    partners[p] = partners.get(p, ()) + (t,)
    return partners
