"""The recognizers of the offline engine: presidio's own, an offline e-mail check, and names.

presidio's e-mail recognizer validates a match with ``tldextract.extract``, whose default
extractor fetches the public-suffix list over the network on first use (and logs an error,
then falls back to its bundled snapshot, when there is none). :class:`OfflineEmailRecognizer`
validates with an extractor built on the bundled snapshot only: same answer, no fetch.

:class:`NameRecognizer` finds person names with the shipped Census name lists
(:mod:`mlaudit.pii.names`) instead of a downloaded NER model.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import tldextract
from presidio_analyzer import AnalysisExplanation, EntityRecognizer, Pattern, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    DateRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    NhsRecognizer,
    PhoneRecognizer,
    UkNinoRecognizer,
    UsPassportRecognizer,
    UsSsnRecognizer,
)

from mlaudit.pii.entities import PERSON, VALUE_SEPARATOR
from mlaudit.pii.names import NameLists, name_lists


@functools.cache
def _offline_suffixes() -> tldextract.TLDExtract:
    # No URLs and no cache folder: tldextract reads the suffix list bundled with it.
    return tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)


class OfflineEmailRecognizer(EmailRecognizer):
    """presidio's e-mail recognizer with a public-suffix check that never fetches."""

    def validate_result(self, pattern_text: str) -> bool:
        return bool(_offline_suffixes()(pattern_text).fqdn)


class ContextualNhsRecognizer(NhsRecognizer):
    """presidio's UK NHS number recognizer, counting only with context.

    One random ten-digit number in eleven passes the NHS checksum, phone numbers among them,
    and presidio then scores it 1.0. Here a number that passes stays at 0.3, under the default
    threshold, and counts where a context word (``nhs``) or an NHS column raises it.
    """

    # presidio declares PATTERNS as a plain (mutable) class attribute; kept the same way.
    PATTERNS = [Pattern("NHS (needs context)", NhsRecognizer.PATTERNS[0].regex, 0.3)]  # noqa: RUF012

    def validate_result(self, pattern_text: str) -> bool | None:  # type: ignore[override]
        # None keeps the pattern's score; False (a failed checksum) discards the match.
        return None if super().validate_result(pattern_text) else False


class DigitsNotInNumbersCreditCardRecognizer(CreditCardRecognizer):
    """presidio's card recognizer, except inside a number or a list of numbers.

    Model files are full of numbers (LightGBM keeps its whole model as text), and one digit
    run in ten passes the Luhn check: neither ``0.4532015112830366`` nor four groups out of
    ``tree_sizes=1047 1474 1355 1381 1578`` is a card number. A match counts only when it is
    not glued to a decimal point or an exponent and does not continue a run of numbers.
    """

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        return [
            result
            for result in super().analyze(text, entities, nlp_artifacts, regex_flags)
            if not _inside_number(text, result.start, result.end)
        ]


def _inside_number(text: str, start: int, end: int) -> bool:
    before = text[max(0, start - 2) : start]
    after = text[end : end + 2]
    glued_before = len(before) == 2 and before[1] in ". -" and before[0].isdigit()
    glued_after = len(after) == 2 and (
        (after[0] in ".eE" and (after[1].isdigit() or after[1] in "+-"))
        or (after[0] in " -" and after[1].isdigit())
    )
    return glued_before or glued_after


# A run of letters, with inner apostrophes and hyphens (O'Brien, Smith-Jones).
_WORD: Final = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")
# What may stand between the parts of one name: spaces, after an initial its full stop.
_GAP: Final = re.compile(r"\.?[ \t]{1,2}")
_REVERSED_GAP: Final = re.compile(r",[ \t]{0,2}")
_SHORT_WORDS: Final = 4


@dataclass(frozen=True)
class _Word:
    text: str
    start: int
    end: int

    @property
    def lower(self) -> str:
        return self.text.lower()

    @property
    def titled(self) -> bool:
        return self.text[0].isupper() and not self.text.isupper()


class NameRecognizer(EntityRecognizer):
    """Person names from the Census lists: a first name, an optional middle, a surname.

    In running text the parts must be capitalised (``Mary Ann Smith``, ``Mary A. Smith``).
    A short value (at most four words: a cell, a class label, a vocabulary n-gram) may be in
    any case and may be reversed (``SMITH, MARY``). A lone first name or surname in a short
    value scores :data:`SINGLE_SCORE`, under the default threshold: it counts only where a
    column name such as ``first_name`` adds presidio's context boost.
    """

    NAME: Final = "NameRecognizer"
    PAIR_SCORE: Final = 0.7
    SINGLE_SCORE: Final = 0.3
    CONTEXT: Final = ["name", "surname", "forename"]

    def __init__(self, lists: NameLists | None = None) -> None:
        self._lists = lists or name_lists()
        super().__init__(supported_entities=[PERSON], name=self.NAME, context=list(self.CONTEXT))

    def load(self) -> None:
        """Nothing to load: the lists are read once per process."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: Any = None
    ) -> list[RecognizerResult]:
        """Names in each value of ``text`` (values batched with :data:`VALUE_SEPARATOR`)."""
        results: list[RecognizerResult] = []
        offset = 0
        for value in text.split(VALUE_SEPARATOR):
            results.extend(
                RecognizerResult(
                    PERSON,
                    offset + start,
                    offset + end,
                    score,
                    analysis_explanation=AnalysisExplanation(self.NAME, score),
                )
                for start, end, score in self.spans(value)
            )
            offset += len(value) + len(VALUE_SEPARATOR)
        return results

    def spans(self, text: str) -> list[tuple[int, int, float]]:
        """(start, end, score) of each name found in one value."""
        words = [_Word(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]
        short = 0 < len(words) <= _SHORT_WORDS
        found = list(self._full_names(text, words, any_case=short))
        if short and not found:
            found = list(self._single_name(words))
        return found

    def best_score(self, text: str) -> float:
        """The highest score :meth:`spans` gives ``text`` (0 when it finds nothing)."""
        return max((score for _, _, score in self.spans(text)), default=0.0)

    def _full_names(
        self, text: str, words: list[_Word], *, any_case: bool
    ) -> Iterator[tuple[int, int, float]]:
        first, last = self._lists.first, self._lists.last
        index = 0
        while index < len(words) - 1:
            word = words[index]
            if word.lower in first and (any_case or word.titled):
                end = self._surname_after(text, words, index, any_case=any_case)
                if end is not None:
                    yield word.start, words[end].end, self.PAIR_SCORE
                    index = end + 1
                    continue
            index += 1
        if (
            any_case
            and len(words) == 2
            and _REVERSED_GAP.fullmatch(text[words[0].end : words[1].start])
            and words[0].lower in last
            and words[1].lower in first
        ):
            yield words[0].start, words[1].end, self.PAIR_SCORE

    def _surname_after(
        self, text: str, words: list[_Word], index: int, *, any_case: bool
    ) -> int | None:
        """Index of the surname ending the longest name that starts at ``index``.

        One middle part may stand between: an initial, or a word on either list (middle
        names are often surnames).
        """
        lists, found = self._lists, None
        for end in range(index + 1, min(index + 3, len(words))):
            candidate, before = words[end], words[end - 1]
            if not _GAP.fullmatch(text[before.end : candidate.start]):
                break
            if not (any_case or candidate.titled or len(candidate.text) == 1):
                break
            if candidate.lower in lists.last:
                found = end
            elif len(candidate.text) > 1 and candidate.lower not in lists.first:
                break
        return found

    def _single_name(self, words: list[_Word]) -> Iterator[tuple[int, int, float]]:
        if len(words) != 1 or len(words[0].text) < 2:
            return
        word = words[0]
        if word.lower in self._lists.first or word.lower in self._lists.last:
            yield word.start, word.end, self.SINGLE_SCORE


def pattern_recognizers() -> list[EntityRecognizer]:
    """presidio's pattern and checksum recognizers for the entities of :mod:`entities`."""
    return [
        OfflineEmailRecognizer(),
        PhoneRecognizer(),
        DigitsNotInNumbersCreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        UsPassportRecognizer(),
        ContextualNhsRecognizer(),
        UkNinoRecognizer(),
        DateRecognizer(),
    ]
