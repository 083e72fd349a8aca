"""Column-name hints: what a column's name says about the personal data it may hold.

A hint does two things. It passes presidio the context words of the entity the name
suggests, so that entity's recognizer raises its score (presidio's context enhancement,
+0.35): a bare ten-digit number scores 0.4 as a phone number, 0.75 in a column named
``phone``. The raw column words are never passed: presidio matches context words as
substrings, and ``us``, a passport context word, is inside ``customer``. And a hint
enables what only a column name can justify: a date counts as a date of birth only in a
``dob`` column, and a lone first name or surname counts as a name only in a name column.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Final

from mlaudit.pii.entities import DATE_OF_BIRTH, PERSON

# Words a column name is split into -> the entity it suggests and presidio context words that
# the entity's recognizer knows (the column word itself may not be one, e.g. "tel").
_HINTS: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "email": ("EMAIL_ADDRESS", ("email",)),
    "mail": ("EMAIL_ADDRESS", ("email",)),
    "phone": ("PHONE_NUMBER", ("phone",)),
    "tel": ("PHONE_NUMBER", ("phone",)),
    "telephone": ("PHONE_NUMBER", ("phone",)),
    "mobile": ("PHONE_NUMBER", ("phone",)),
    "cell": ("PHONE_NUMBER", ("phone",)),
    "fax": ("PHONE_NUMBER", ("phone",)),
    "ssn": ("US_SSN", ("ssn",)),
    "dob": (DATE_OF_BIRTH, ("birthday", "date")),
    "birth": (DATE_OF_BIRTH, ("birthday", "date")),
    "birthday": (DATE_OF_BIRTH, ("birthday", "date")),
    "birthdate": (DATE_OF_BIRTH, ("birthday", "date")),
    "name": (PERSON, ("name",)),
    "firstname": (PERSON, ("name",)),
    "lastname": (PERSON, ("name",)),
    "fullname": (PERSON, ("name",)),
    "surname": (PERSON, ("name",)),
    "forename": (PERSON, ("name",)),
    "iban": ("IBAN_CODE", ("iban",)),
    "card": ("CREDIT_CARD", ("credit", "card")),
    "pan": ("CREDIT_CARD", ("credit", "card")),
    "ip": ("IP_ADDRESS", ("ip",)),
    "passport": ("US_PASSPORT", ("passport",)),
    "nhs": ("UK_NHS", ("nhs",)),
    "nino": ("UK_NINO", ("nino",)),
}
# Two-word spellings that mean one thing ("social_security", "first_name").
_PAIRS: Final = {
    ("social", "security"): "ssn",
    ("date", "of"): "birth",
    ("e", "mail"): "email",
    ("ip", "address"): "ip",
}
# Name-like words that name something other than a person.
_NOT_PERSON: Final = frozenset(
    {"file", "filename", "user", "username", "host", "hostname", "product", "company", "brand",
     "model", "feature", "column", "table", "class", "city", "country", "street", "domain",
     "path", "field", "event", "project", "team", "category", "item", "store", "job"}
)
_CAMEL: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT: Final = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class ColumnHint:
    """What a column's name suggests: presidio context words and the entities it vouches for."""

    context: tuple[str, ...] = ()
    expects: frozenset[str] = frozenset()

    @property
    def birth_date(self) -> bool:
        return DATE_OF_BIRTH in self.expects

    @property
    def person(self) -> bool:
        return PERSON in self.expects


NO_HINT: Final = ColumnHint()


def column_words(name: str) -> list[str]:
    """``customerEmail_2`` -> ``["customer", "email", "2"]``."""
    return [w for w in _SPLIT.split(_CAMEL.sub(" ", name).lower()) if w]


def hint_for(column: str) -> ColumnHint:
    words = column_words(column)
    words += [_PAIRS[pair] for pair in itertools.pairwise(words) if pair in _PAIRS]
    expects: set[str] = set()
    context: list[str] = []
    for word in words:
        found = _HINTS.get(word)
        if found is None:
            continue
        entity, extra = found
        if entity == PERSON and _NOT_PERSON.intersection(words):
            continue
        expects.add(entity)
        context.extend(extra)
    if not expects:
        return NO_HINT
    return ColumnHint(tuple(dict.fromkeys(context)), frozenset(expects))
