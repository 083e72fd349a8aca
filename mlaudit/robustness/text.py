"""Word-level evasion of text classifiers: typos and synonym swaps, greedy by word importance.

The attacker changes whole words of a text, each into a realistic variant: a typo (two
neighbouring letters swapped, a letter deleted, a neighbouring key inserted or struck instead)
or a synonym from a small lexicon bundled with mlaudit (``data/synonyms.txt``). The search is
the greedy word-importance attack of the text-attack literature (Jin et al.'s TextFooler, Gao
et al.'s DeepWordBug): each word's importance is how much the model's margin for the true
class drops when the word is left out; words are then changed most important first, each into
the variant that lowers the margin most, until the decision flips or the text's word budget
or query budget is spent. A flip is confirmed with the model's own ``predict`` before it
counts. Every step queries the model once for all texts still under attack (one batch).

Written here rather than taken from TextAttack or OpenAttack: both pull in TensorFlow or
PyTorch and download word embeddings and sentence encoders at run time, and mlaudit runs
offline; the attack needs only the model's scores and a few hundred lines.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

# A word: letters, with inner apostrophes (don't, o'clock); digits and punctuation are kept
# as they are, between the words.
WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
PERTURBATIONS = ("typo", "synonym")
_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
# Typos change words of at least this many letters: a typo in "a" or "is" is not realistic.
MIN_TYPO_LENGTH = 3

Scorer = Callable[[list[str]], np.ndarray | None]
Decider = Callable[[list[str]], np.ndarray]


@cache
def keyboard_neighbours() -> Mapping[str, str]:
    """The letters next to each letter on a QWERTY keyboard (same row and the rows beside)."""
    where = {key: (r, c) for r, row in enumerate(_KEYBOARD_ROWS) for c, key in enumerate(row)}
    neighbours: dict[str, str] = {}
    for key, (r, c) in where.items():
        near = [(r, c - 1), (r, c + 1), (r - 1, c), (r - 1, c + 1), (r + 1, c - 1), (r + 1, c)]
        neighbours[key] = "".join(
            _KEYBOARD_ROWS[nr][nc]
            for nr, nc in near
            if 0 <= nr < len(_KEYBOARD_ROWS) and 0 <= nc < len(_KEYBOARD_ROWS[nr])
        )
    return neighbours


@cache
def synonym_lexicon() -> Mapping[str, tuple[str, ...]]:
    """Each lexicon word and the words it may be swapped with (every other word of each
    group it belongs to), lower case."""
    text = (resources.files("mlaudit.robustness") / "data" / "synonyms.txt").read_text("utf-8")
    swaps: dict[str, dict[str, None]] = {}
    for line in text.splitlines():
        group = line.split("#", 1)[0].split()
        for word in group:
            swaps.setdefault(word, {}).update(dict.fromkeys(w for w in group if w != word))
    return {word: tuple(others) for word, others in swaps.items()}


def typos(word: str) -> list[str]:
    """Every one-keystroke typo of ``word``, in a stable order: neighbouring letters swapped,
    a letter deleted, a neighbouring key inserted after a letter or struck instead of it."""
    if len(word) < MIN_TYPO_LENGTH:
        return []
    neighbours = keyboard_neighbours()
    found: dict[str, None] = {}
    for i in range(len(word) - 1):
        if word[i] != word[i + 1]:
            found[word[:i] + word[i + 1] + word[i] + word[i + 2 :]] = None
    for i in range(len(word)):
        found[word[:i] + word[i + 1 :]] = None
        letter = word[i]
        for near in neighbours.get(letter.lower(), ""):
            key = near.upper() if letter.isupper() else near
            found[word[: i + 1] + key + word[i + 1 :]] = None
            found[word[:i] + key + word[i + 1 :]] = None
    found.pop(word, None)
    return list(found)


def _cased(replacement: str, like: str) -> str:
    """``replacement`` written in the case of the word it replaces."""
    if like.isupper() and len(like) > 1:
        return replacement.upper()
    if like[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


@dataclass(frozen=True)
class Perturber:
    """The variants an attacker may turn one word into: ``kinds`` of :data:`PERTURBATIONS`,
    with at most ``typos_per_word`` typos drawn per word (every synonym is tried)."""

    kinds: tuple[str, ...] = PERTURBATIONS
    typos_per_word: int = 6

    def candidates(self, word: str, rng: np.random.Generator | None) -> list[str]:
        """``word``'s variants; typos drawn with ``rng`` (None: all of them, for a search that
        must see every variant)."""
        found: dict[str, None] = {}
        if "synonym" in self.kinds:
            found.update(dict.fromkeys(_cased(s, word) for s in synonym_lexicon().get(
                word.lower(), ()
            )))
        if "typo" in self.kinds and self.typos_per_word > 0:
            every = typos(word)
            if rng is not None and len(every) > self.typos_per_word:
                chosen = rng.choice(len(every), size=self.typos_per_word, replace=False)
                every = [every[k] for k in sorted(chosen)]
            found.update(dict.fromkeys(every))
        found.pop(word, None)
        return list(found)


@dataclass(frozen=True)
class Tokens:
    """A text as its words and the text around them, so words can be replaced in place."""

    gaps: tuple[str, ...]  # len(words) + 1 pieces: before the first word, between, after
    words: tuple[str, ...]

    @classmethod
    def of(cls, text: str) -> Tokens:
        gaps, words, last = [], [], 0
        for match in WORD.finditer(text):
            gaps.append(text[last : match.start()])
            words.append(match.group())
            last = match.end()
        gaps.append(text[last:])
        return cls(tuple(gaps), tuple(words))

    def render(self, words: Sequence[str]) -> str:
        parts = [self.gaps[0]]
        for word, gap in zip(words, self.gaps[1:], strict=True):
            parts += [word, gap]
        return "".join(parts)


def word_budget(words: int, share: float) -> int:
    """Words an attacker may change in a text of ``words`` words at ``share``: at least one."""
    return min(words, max(1, math.floor(share * words + 1e-9)))


def share_radius(changed: np.ndarray, words: np.ndarray) -> np.ndarray:
    """The smallest share of its words at which each text's flip is within budget: 0 for a
    one-word flip (one word is always allowed), ``changed / words`` otherwise, inf where no
    flip was found. A text survives a share ``s`` exactly when its radius is above ``s``, the
    comparison MLA201's survival and accuracy curve make with their radii."""
    with np.errstate(invalid="ignore", divide="ignore"):
        radius = np.where(changed <= 1, 0.0, changed / np.maximum(words, 1))
    return np.where(np.isfinite(changed), radius, np.inf)


@dataclass(frozen=True)
class TextAttackSettings:
    perturber: Perturber
    max_share: float  # the largest share of a text's words the search may change
    queries: int  # model queries per text


@dataclass(frozen=True, eq=False)
class TextAttackOutcome:
    """Per attacked text: its words, the words changed by the flip found (inf: none), the
    queries spent, and whether the query budget ran out before the word budget."""

    words: np.ndarray
    changed: np.ndarray
    queries: np.ndarray
    exhausted: np.ndarray
    calls: int
    scored: bool  # the search was guided by scores (False: by labels alone)

    @property
    def radii(self) -> np.ndarray:
        return share_radius(self.changed, self.words)


def margins(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The true class's score minus the best other class's: below 0, another class wins."""
    rows = np.arange(len(truth))
    true_score = scores[rows, truth]
    others = scores.astype(np.float64, copy=True)
    others[rows, truth] = -np.inf
    return np.asarray(true_score - others.max(axis=1), dtype=np.float64)


class _Search:
    """The state of one greedy attack over many texts (see the module's docstring)."""

    def __init__(  # noqa: PLR0917 - the attack's inputs, passed on by greedy_text_attack
        self,
        texts: Sequence[str],
        truth: np.ndarray,
        classes: Sequence[object],
        settings: TextAttackSettings,
        score: Scorer,
        decide: Decider,
        rng: np.random.Generator,
    ) -> None:
        self.tokens = [Tokens.of(t) for t in texts]
        self.current = [list(t.words) for t in self.tokens]
        self.truth = np.asarray(truth, dtype=np.int64)
        self.classes = list(classes)
        self.settings, self.score, self.decide, self.rng = settings, score, decide, rng
        count = len(texts)
        self.words = np.array([len(t.words) for t in self.tokens], dtype=np.int64)
        self.budget = np.array(
            [word_budget(int(w), settings.max_share) for w in self.words], dtype=np.int64
        )
        self.changed = np.full(count, np.inf)
        self.done_changes = np.zeros(count, dtype=np.int64)
        self.queries = np.zeros(count, dtype=np.int64)
        self.exhausted = np.zeros(count, dtype=bool)
        self.calls = 0
        self.scored = True
        self.margin = np.zeros(count)  # each text's true-class margin as it stands

    def margins_of(self, texts: list[str], owners: np.ndarray) -> np.ndarray:
        """Each text's true-class margin (labels alone: +1 kept, -1 flipped), counted."""
        self.calls += 1
        np.add.at(self.queries, owners, 1)
        scores = self.score(texts) if self.scored else None
        if scores is not None:
            return margins(np.asarray(scores, dtype=np.float64), self.truth[owners])
        self.scored = False
        labels = self.decide(texts)
        expected = np.asarray(self.classes, dtype=object)[self.truth[owners]]
        return np.where(labels == expected, 1.0, -1.0)

    def importance_order(self) -> list[list[int]]:
        """Each text's word positions, most important first (leave-one-out)."""
        texts, owners, positions = [], [], []
        for i, tokens in enumerate(self.tokens):
            # A text too long to rank within its query budget is searched in random order.
            if 0 < self.words[i] < self.settings.queries // 2:
                for j in range(self.words[i]):
                    texts.append(tokens.render([*tokens.words[:j], "", *tokens.words[j + 1 :]]))
                    owners.append(i)
                    positions.append(j)
        base = self.margins_of([t.render(t.words) for t in self.tokens],
                               np.arange(len(self.tokens)))
        drops = [np.zeros(w) for w in self.words]
        if texts:
            left_out = self.margins_of(texts, np.asarray(owners, dtype=np.int64))
            for owner, position, margin in zip(owners, positions, left_out, strict=True):
                drops[owner][position] = base[owner] - margin
        self.margin = base
        # Ties (equal drops, or no ranking) are broken at random, not by position.
        return [
            list(np.lexsort((self.rng.random(len(d)), -d))) for d in drops
        ]

    def run(self, check_budget: Callable[[], None]) -> TextAttackOutcome:
        order = self.importance_order()
        pointer = np.zeros(len(self.tokens), dtype=np.int64)
        active = {i for i in range(len(self.tokens)) if self.words[i] > 0}
        while active:
            check_budget()
            texts, owners, variants = [], [], []
            for i in sorted(active):
                tried = self._next_word(i, order[i], pointer)
                if tried is None:
                    active.discard(i)
                    continue
                position, options = tried
                for option in options:
                    words = list(self.current[i])
                    words[position] = option
                    texts.append(self.tokens[i].render(words))
                    owners.append(i)
                    variants.append((position, option))
            if not texts:
                break
            self._step(texts, np.asarray(owners, dtype=np.int64), variants, active)
        return TextAttackOutcome(
            self.words, self.changed, self.queries, self.exhausted, self.calls, self.scored
        )

    def _next_word(
        self, i: int, order: list[int], pointer: np.ndarray
    ) -> tuple[int, list[str]] | None:
        """The next word of text ``i`` to change and its variants; None when the text is
        done (word budget, words or queries spent)."""
        if self.done_changes[i] >= self.budget[i]:
            return None
        while pointer[i] < len(order):
            position = int(order[pointer[i]])
            pointer[i] += 1
            options = self.settings.perturber.candidates(
                self.tokens[i].words[position], self.rng
            )
            if not options:
                continue
            # Room for the variants and for the predict that confirms a flip.
            if self.queries[i] + len(options) + 1 > self.settings.queries:
                self.exhausted[i] = True
                return None
            return position, options
        return None

    def _step(
        self,
        texts: list[str],
        owners: np.ndarray,
        variants: list[tuple[int, str]],
        active: set[int],
    ) -> None:
        found = self.margins_of(texts, owners)
        for i in np.unique(owners):
            mine = np.flatnonzero(owners == i)
            best = int(mine[np.argmin(found[mine])])
            flipped = [int(k) for k in mine[np.argsort(found[mine])] if found[k] <= 0]
            if flipped and self._confirmed(texts[flipped[0]], int(i)):
                self.changed[i] = self.done_changes[i] + 1
                active.discard(int(i))
                continue
            # Keep the change that brought the decision closest to flipping; labels alone
            # cannot tell, so a random variant is kept (the budget counts it all the same).
            keep = best if self.scored else int(self.rng.choice(mine))
            if not self.scored or found[keep] < self.margin[i]:
                position, option = variants[keep]
                self.current[i][position] = option
                self.margin[i] = found[keep]
                self.done_changes[i] += 1

    def _confirmed(self, text: str, i: int) -> bool:
        """A flip by the scores, checked with the model's own decision (labels alone: it was
        the decision)."""
        if not self.scored:
            return True
        self.calls += 1
        self.queries[i] += 1
        label = self.decide([text])[0]
        return bool(label != self.classes[self.truth[i]])


def greedy_text_attack(
    texts: Sequence[str],
    truth: np.ndarray,
    classes: Sequence[object],
    settings: TextAttackSettings,
    *,
    score: Scorer,
    decide: Decider,
    rng: np.random.Generator,
    check_budget: Callable[[], None] = lambda: None,
) -> TextAttackOutcome:
    """Attack each text of ``texts`` (correctly classified as ``classes[truth[i]]``).

    ``score(texts)`` gives per-class scores (probabilities or decision margins; None for a
    model with labels alone), ``decide(texts)`` the model's decisions.
    """
    search = _Search(texts, truth, classes, settings, score, decide, rng)
    return search.run(check_budget)
