"""Answer metrics: LoCoMo's official normalisation and token F1, exact match, candidate accuracy
with its chance level, and bootstrap confidence intervals.

The LoCoMo functions follow ``task_eval/evaluation.py`` of snap-research/locomo:

- :func:`normalize_answer`: delete commas, lowercase, delete ASCII punctuation, delete the words
  "a", "an", "the" and "and", collapse whitespace.
- :func:`token_f1`: F1 over Porter-stemmed normalised tokens (the official script uses NLTK's
  ``PorterStemmer()``; :func:`porter_stem` reimplements its default mode so that no NLTK is needed).
- :func:`exact_match`: the official definition, equal *sets* of normalised tokens.
- :func:`locomo_score`: the per-category rule: 1 (multi-hop) splits prediction and answer on commas
  and averages, over answer parts, the best F1 against any prediction part; 2 and 4 use
  :func:`token_f1`; 3 keeps the answer up to its first ";" and then uses :func:`token_f1`; 5
  (adversarial) scores 1 when the prediction says "no information available" or "not mentioned".
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the|and)\b")
_PUNCT = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """LoCoMo's official answer normalisation (see the module docstring)."""
    s = "".join(ch for ch in s.replace(",", "").lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def _tokens(s: str) -> list[str]:
    return [porter_stem(w) for w in normalize_answer(s).split()]


def token_f1(prediction: str, answer: str) -> float:
    """Token F1 between a prediction and a reference, on stemmed normalised tokens (0 if no overlap)."""
    pred, gold = _tokens(prediction), _tokens(answer)
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def multi_answer_f1(prediction: str, answer: str) -> float:
    """LoCoMo's multi-hop F1: mean over comma-separated answer parts of the best part-wise F1."""
    preds = [p.strip() for p in prediction.split(",")]
    golds = [g.strip() for g in answer.split(",")]
    return float(np.mean([max(token_f1(p, g) for p in preds) for g in golds]))


def exact_match(prediction: str, answer: str) -> bool:
    """LoCoMo's exact match: the normalised token sets are equal."""
    return set(normalize_answer(prediction).split()) == set(normalize_answer(answer).split())


def locomo_score(prediction: str, answer: str, category: int) -> float:
    """The official LoCoMo QA score of one prediction for a question of ``category`` (1–5).

    Raises:
        ValueError: For a category outside 1–5.
    """
    if category == 1:
        return multi_answer_f1(prediction, answer)
    if category in (2, 4):
        return token_f1(prediction, answer)
    if category == 3:
        return token_f1(prediction, answer.split(";")[0].strip())
    if category == 5:
        low = prediction.lower()
        return float("no information available" in low or "not mentioned" in low)
    raise ValueError(f"LoCoMo category must be 1-5, got {category!r}")


def bootstrap_ci(values: Sequence[float], n: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> tuple[float, float, float]:
    """Mean of ``values`` with a percentile-bootstrap ``1 - alpha`` interval.

    Args:
        values: Per-item scores (e.g. 0/1 correctness or F1).
        n: Bootstrap resamples.
        seed: Seed of the resampling.
        alpha: Two-sided miss rate (0.05 gives a 95 % interval).

    Returns:
        ``(mean, lo, hi)``.

    Raises:
        ValueError: For no values, ``n < 1`` or ``alpha`` outside (0, 1).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"bootstrap_ci needs a non-empty 1-D sequence, got shape {x.shape}")
    if n < 1 or not 0.0 < alpha < 1.0:
        raise ValueError(f"need n >= 1 and 0 < alpha < 1, got n={n}, alpha={alpha}")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n, x.size))  # [n, N]
    means = x[idx].mean(axis=1)  # [n]
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(x.mean()), float(lo), float(hi)


def chance_level(candidates: Sequence[Sequence[str]]) -> float:
    """Expected accuracy of a uniform guess: the mean of ``1 / len(candidates)`` over episodes.

    Raises:
        ValueError: For no episodes or an episode with no candidates.
    """
    if not candidates or any(len(c) == 0 for c in candidates):
        raise ValueError("chance_level needs at least one episode, each with at least one candidate")
    return float(np.mean([1.0 / len(c) for c in candidates]))


def accuracy_with_chance(correct: Sequence[bool | float], candidates: Sequence[Sequence[str]],
                         n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Candidate accuracy with its 95 % bootstrap interval and the chance level.

    Args:
        correct: Per-episode correctness (bool or 0/1).
        candidates: Per-episode candidate lists, aligned with ``correct``.
        n_boot: Bootstrap resamples.
        seed: Bootstrap seed.

    Returns:
        ``{"acc", "lo", "hi", "chance", "n"}``.

    Raises:
        ValueError: If the two sequences differ in length or are empty.
    """
    if len(correct) != len(candidates):
        raise ValueError(f"{len(correct)} correctness values for {len(candidates)} candidate lists")
    acc, lo, hi = bootstrap_ci([float(c) for c in correct], n=n_boot, seed=seed)
    return {"acc": acc, "lo": lo, "hi": hi, "chance": chance_level(candidates), "n": len(correct)}


# --- Porter stemmer (NLTK's default "NLTK_EXTENSIONS" mode, reimplemented) ---------------------

_VOWELS = frozenset("aeiou")
_IRREGULAR = {"skies": "sky", "sky": "sky", "dying": "die", "lying": "lie", "tying": "tie",
              "news": "news", "innings": "inning", "inning": "inning", "outings": "outing",
              "outing": "outing", "cannings": "canning", "canning": "canning", "howe": "howe",
              "proceed": "proceed", "exceed": "exceed", "succeed": "succeed"}


def _consonants(w: str) -> list[bool]:
    """Per letter: is it a consonant ("y" is one at the start or after a vowel)."""
    flags: list[bool] = []
    for i, ch in enumerate(w):
        flags.append(ch not in _VOWELS and (ch != "y" or i == 0 or not flags[i - 1]))
    return flags


def _measure(stem: str) -> int:
    """Porter's m: the number of vowel→consonant transitions."""
    return "".join("c" if c else "v" for c in _consonants(stem)).count("vc")


def _has_vowel(stem: str) -> bool:
    return not all(_consonants(stem))


def _double_consonant(w: str) -> bool:
    return len(w) >= 2 and w[-1] == w[-2] and _consonants(w)[-1]


def _cvc(w: str) -> bool:
    c = _consonants(w)
    if len(w) >= 3:
        return c[-3] and not c[-2] and c[-1] and w[-1] not in "wxy"
    return len(w) == 2 and not c[0] and c[1]


def _rules(w: str, rules: Sequence[tuple[str, str, int]]) -> str:
    """Apply the first rule whose suffix matches, if the remaining stem's measure exceeds the bound."""
    for suffix, repl, min_m in rules:
        if w.endswith(suffix):
            stem = w[: -len(suffix)]
            return stem + repl if _measure(stem) > min_m else w
    return w


def _step1ab(w: str) -> str:
    if w.endswith("ies") and len(w) == 4:
        w = w[:-3] + "ie"
    else:
        for suffix, repl in (("sses", "ss"), ("ies", "i"), ("ss", "ss"), ("s", "")):
            if w.endswith(suffix):
                w = w[: -len(suffix)] + repl
                break
    if w.endswith("ied"):
        return w[:-3] + ("ie" if len(w) == 4 else "i")
    if w.endswith("eed"):
        return w[:-1] if _measure(w[:-3]) > 0 else w
    for suffix in ("ed", "ing"):
        if w.endswith(suffix) and _has_vowel(w[: -len(suffix)]):
            break
    else:
        return w
    w = w[: -len(suffix)]
    if w.endswith(("at", "bl", "iz")):
        return w + "e"
    if _double_consonant(w):
        return w if w[-1] in "lsz" else w[:-1]
    return w + "e" if _measure(w) == 1 and _cvc(w) else w


_STEP2 = (("ational", "ate"), ("tional", "tion"), ("enci", "ence"), ("anci", "ance"), ("izer", "ize"),
          ("bli", "ble"), ("alli", "al"), ("entli", "ent"), ("eli", "e"), ("ousli", "ous"),
          ("ization", "ize"), ("ation", "ate"), ("ator", "ate"), ("alism", "al"), ("iveness", "ive"),
          ("fulness", "ful"), ("ousness", "ous"), ("aliti", "al"), ("iviti", "ive"), ("biliti", "ble"),
          ("fulli", "ful"))
_STEP3 = (("icate", "ic"), ("ative", ""), ("alize", "al"), ("iciti", "ic"), ("ical", "ic"), ("ful", ""),
          ("ness", ""))
_STEP4 = ("al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent", "ion", "ou",
          "ism", "ate", "iti", "ous", "ive", "ize")


def _step2(w: str) -> str:
    if w.endswith("alli") and _measure(w[:-4]) > 0:
        return _step2(w[:-4] + "al")
    for suffix, repl in _STEP2:
        if w.endswith(suffix):
            return _rules(w, [(suffix, repl, 0)])
    if w.endswith("logi"):  # NLTK's extension tests the measure of the word minus "ogi"
        return w[:-1] if _measure(w[:-3]) > 0 else w
    return w


def _step4(w: str) -> str:
    for suffix in _STEP4:
        if w.endswith(suffix):
            stem = w[: -len(suffix)]
            ok = _measure(stem) > 1 and (suffix != "ion" or stem[-1] in "st")
            return stem if ok else w
    return w


def porter_stem(word: str) -> str:
    """Porter stem of a word, as NLTK's ``PorterStemmer().stem`` computes it (lowercased)."""
    w = word.lower()
    if w in _IRREGULAR:
        return _IRREGULAR[w]
    if len(word) <= 2:
        return w
    w = _step1ab(w)
    if w.endswith("y") and len(w) > 2 and _consonants(w[:-1])[-1]:
        w = w[:-1] + "i"
    w = _rules(_step2(w), [(s, r, 0) for s, r in _STEP3])
    w = _step4(w)
    if w.endswith("e"):
        m = _measure(w[:-1])
        if m > 1 or (m == 1 and not _cvc(w[:-1])):
            w = w[:-1]
    if w.endswith("ll") and _measure(w[:-1]) > 1:
        w = w[:-1]
    return w
