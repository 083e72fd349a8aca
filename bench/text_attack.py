"""Benchmark MLA205's greedy text attack against an exhaustive search on the same word swaps.

Run from the repository root::

    .venv/bin/python bench/text_attack.py [--runs 3] [--texts 60] [--words 3]

One TF-IDF + LogisticRegression sentiment model is trained on reviews written with a small
vocabulary: every word comes from a synonym group of mlaudit's lexicon, and training uses only
the first word of each group, so a synonym swap hides a word from the model. Each correctly
classified holdout review (10 words, 2 or 3 of them cue words) is attacked with synonym swaps
only (a vocabulary small enough to search exhaustively), with at most ``--words`` words
changed:

* **greedy**: ``mlaudit.robustness.text.greedy_text_attack``, MLA205's search (leave-one-out
  word importance, then the best swap for each word in that order), batched over all texts;
* **exhaustive**: every set of 1, then 2, ... ``--words`` positions and every combination of
  their synonyms, level by level (a whole level is one batch), stopping at the first level
  with a flip: the smallest flip that exists, so its success rate is the ceiling.

Printed: success rate (flipped within the budget, of the correct decisions), words changed
(mean over flipped texts), median queries per text, median wall seconds over ``--runs`` runs,
and greedy/exhaustive ratios. TextAttack (the usual peer) was not run: it needs TensorFlow or
PyTorch plus word embeddings and a sentence encoder downloaded at run time, and this benchmark,
like mlaudit, runs offline; the exhaustive search is the stronger reference anyway, as it is
the optimum any search over these swaps can reach.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from mlaudit.loaders.sklearn import wrap_estimator
from mlaudit.robustness.text import (
    Perturber,
    TextAttackSettings,
    Tokens,
    greedy_text_attack,
    synonym_lexicon,
)
from mlaudit.subject.model_info import LoadedModel

POSITIVE = ("good", "great", "wonderful", "happy", "beautiful", "interesting", "funny")
NEGATIVE = ("bad", "awful", "boring", "sad", "ugly", "stupid", "dirty")
FILLER = ("movie", "story", "actor", "scene", "plot", "director", "ending", "picture", "book",
          "song", "place", "time", "people", "friend", "car", "house")
LENGTH = 10
COLUMN = "text"


@dataclass(frozen=True)
class Outcome:
    changed: np.ndarray  # words changed by the flip found, inf where none
    queries: np.ndarray  # per text
    seconds: float


def reviews(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    texts, labels = [], []
    for row in range(rows):
        label = row % 2
        cues = list(rng.choice(POSITIVE if label else NEGATIVE, size=int(rng.integers(2, 4))))
        words = cues + list(rng.choice(FILLER, size=LENGTH - len(cues)))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return pd.DataFrame({COLUMN: texts, "label": labels})


def model_and_texts(count: int) -> tuple[LoadedModel, list[str], np.ndarray]:
    rng = np.random.default_rng(0)
    train, holdout = reviews(400, rng), reviews(count * 2, rng)
    estimator = Pipeline([("tfidf", TfidfVectorizer()), ("lr", LogisticRegression(C=10))])
    estimator.fit(train[COLUMN], train["label"])
    model = wrap_estimator(estimator, "scikit-learn", "bench", text_column=COLUMN)
    correct = estimator.predict(holdout[COLUMN]) == holdout["label"].to_numpy()
    kept = holdout[correct].iloc[:count]
    return model, kept[COLUMN].tolist(), kept["label"].to_numpy()


def greedy(model: LoadedModel, texts: list[str], truth: np.ndarray, words: int) -> Outcome:
    def frame(batch: list[str]) -> pd.DataFrame:
        return pd.DataFrame({COLUMN: batch})

    started = time.perf_counter()
    outcome = greedy_text_attack(
        texts, truth, [0, 1],
        TextAttackSettings(Perturber(("synonym",)), words / LENGTH, queries=1_000_000),
        score=lambda batch: model.class_scores(frame(batch)),
        decide=lambda batch: model.predict(frame(batch)),
        rng=np.random.default_rng(0),
    )
    return Outcome(outcome.changed, outcome.queries, time.perf_counter() - started)


def exhaustive(model: LoadedModel, texts: list[str], truth: np.ndarray, words: int) -> Outcome:
    perturber = Perturber(("synonym",))
    changed = np.full(len(texts), np.inf)
    queries = np.zeros(len(texts), dtype=np.int64)
    started = time.perf_counter()
    for i, text in enumerate(texts):
        tokens = Tokens.of(text)
        options = [perturber.candidates(w, None) for w in tokens.words]
        swappable = [j for j, found in enumerate(options) if found]
        for size in range(1, words + 1):
            batch = []
            for positions in itertools.combinations(swappable, size):
                for choice in itertools.product(*(options[j] for j in positions)):
                    current = list(tokens.words)
                    for j, word in zip(positions, choice, strict=True):
                        current[j] = word
                    batch.append(tokens.render(current))
            if not batch:
                continue
            queries[i] += len(batch)
            decisions = model.predict(pd.DataFrame({COLUMN: batch}))
            if (decisions != truth[i]).any():
                changed[i] = size
                break
    return Outcome(changed, queries, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--texts", type=int, default=60)
    parser.add_argument("--words", type=int, default=3)
    arguments = parser.parse_args()
    model, texts, truth = model_and_texts(arguments.texts)
    lexicon = synonym_lexicon()
    assert all(w in lexicon for w in (*POSITIVE, *NEGATIVE, *FILLER)), "vocabulary off-lexicon"
    methods: dict[str, Callable[..., Outcome]] = {"greedy (MLA205)": greedy,
                                                  "exhaustive": exhaustive}
    results: dict[str, list[Outcome]] = {name: [] for name in methods}
    for run in range(arguments.runs):
        for name, method in methods.items():
            print(f"run {run + 1}/{arguments.runs}: {name}", file=sys.stderr)
            results[name].append(method(model, texts, truth, arguments.words))
    print(f"Text attack on {len(texts)} correctly classified reviews of {LENGTH} words, "
          f"synonym swaps, at most {arguments.words} words changed; median of "
          f"{arguments.runs} runs.\n")
    print("| search | success rate | words changed (mean) | median queries per text | "
          "seconds |")
    print("|---|---|---|---|---|")
    summary = {}
    for name, outcomes in results.items():
        first = outcomes[0]
        found = first.changed[np.isfinite(first.changed)]
        seconds = statistics.median(o.seconds for o in outcomes)
        summary[name] = (len(found) / len(texts), float(np.median(first.queries)), seconds)
        print(f"| {name} | {len(found) / len(texts):.1%} | "
              f"{found.mean() if len(found) else float('nan'):.2f} | "
              f"{np.median(first.queries):.0f} | {seconds:.2f} |")
    (g_rate, g_queries, g_time), (e_rate, e_queries, e_time) = summary.values()
    print(f"| ratio greedy/exhaustive | {g_rate / e_rate if e_rate else float('nan'):.2f} | | "
          f"{g_queries / e_queries:.3f} | {g_time / e_time:.3f} |")


if __name__ == "__main__":
    main()
