"""The personal-data entity types mlaudit looks for, and what each one needs to be found.

Names are presidio's entity names, except ``DATE_OF_BIRTH``: presidio finds dates
(``DATE_TIME``), and a date is personal data only where the column says it is a birth date,
so dates count only there (see :mod:`mlaudit.pii.hints`).

``could_hold`` is a necessary condition for a recognizer to match a text: a value that fails
it for every entity never reaches presidio. The conditions are deliberately loose (a phone
number has at least five digits, an e-mail address an ``@``) so that skipping costs no recall.

``ceiling`` is the highest score the entity's recognizer gives without a context word
(presidio's phone recognizer scores every valid number 0.4). Where that is under the
threshold, a match can only count with a context word, so a text with none, in a column
whose name gives none, need not run that recognizer either.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from mlaudit.core.findings import Severity

DATE_TIME: Final = "DATE_TIME"
DATE_OF_BIRTH: Final = "DATE_OF_BIRTH"
PERSON: Final = "PERSON"
_DIGIT: Final = re.compile(r"\d")
_LETTER: Final = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class TextShape:
    """Cheap facts about one text, computed once and shared by every entity's pre-check."""

    length: int
    digits: int
    has_at: bool
    dots: int
    colons: int
    has_letter: bool

    @staticmethod
    def of(text: str) -> TextShape:
        return TextShape(
            length=len(text),
            digits=len(_DIGIT.findall(text)),
            has_at="@" in text,
            dots=text.count("."),
            colons=text.count(":"),
            has_letter=_LETTER.search(text) is not None,
        )


@dataclass(frozen=True)
class Entity:
    """One entity type: how it is named in reports, how grave it is, and its pre-check."""

    name: str
    label: str
    severity: Severity
    could_hold: Callable[[TextShape], bool]
    ceiling: float = 1.0


ENTITIES: Final = (
    Entity("EMAIL_ADDRESS", "e-mail address", Severity.MEDIUM, lambda s: s.has_at),
    Entity("PHONE_NUMBER", "phone number", Severity.MEDIUM, lambda s: s.digits >= 5, 0.4),
    Entity(PERSON, "person name", Severity.MEDIUM, lambda s: s.has_letter),
    Entity("CREDIT_CARD", "payment card number", Severity.HIGH, lambda s: s.digits >= 12),
    Entity("IBAN_CODE", "IBAN", Severity.HIGH, lambda s: s.length >= 15 and s.digits >= 4),
    Entity("US_SSN", "US social security number", Severity.HIGH, lambda s: s.digits >= 9),
    Entity("US_PASSPORT", "US passport number", Severity.HIGH, lambda s: s.digits >= 8, 0.1),
    Entity("UK_NHS", "UK NHS number", Severity.HIGH, lambda s: s.digits >= 10, 0.3),
    Entity("UK_NINO", "UK national insurance number", Severity.HIGH, lambda s: s.digits >= 6),
    Entity(
        "IP_ADDRESS", "IP address", Severity.MEDIUM,
        lambda s: (s.dots >= 3 and s.digits >= 4) or s.colons >= 2,
    ),
    Entity(DATE_OF_BIRTH, "date of birth", Severity.MEDIUM, lambda s: s.digits >= 2),
)
BY_NAME: Final = {entity.name: entity for entity in ENTITIES}
ENTITY_NAMES: Final = tuple(BY_NAME)


def entity(name: str) -> Entity:
    return BY_NAME[name]


# Joins values analysed in one presidio call. Six filler words: presidio looks for context
# words among the five before a match, so no value lends its context to the next. The filler
# holds no letter run that is a name and no digit, so no recognizer matches across it.
VALUE_SEPARATOR: Final = "\n" + " ".join(["qzxv"] * 6) + "\n"
