"""Redaction: the only form in which a personal value may leave the rule that found it.

Evidence carries a masked form a reviewer can recognise (``j•••@e•••.com``, ``•••0143``,
``J••• S•••``) and, when a salt is set, a keyed hash a waiver can name.

The salt. A waiver that names a value must see the same hash in every run, so the salt must
be stable; but a hash with a known salt is reversible for small value spaces (a US SSN is
one of 10^9, and its last four digits are shown), so the salt must also be secret. It is
therefore read from the environment variable :data:`SALT_ENV` (a CI secret), never from a
committed config file and never written to a report. Without it, evidence carries no hash
(``hash: null``): reports stay deterministic, and nothing in them can be brute-forced.

The mask character ``•`` is not a character of an e-mail address, a number or a name as the
recognizers match them, so a masked form never lines up with a stretch of the original.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from mlaudit.core.findings import JsonValue, RuleResult
from mlaudit.pii.entities import DATE_OF_BIRTH, PERSON

SALT_ENV: Final = "MLAUDIT_PII_SALT"
MASK: Final = "•••"
HASH_PREFIX: Final = "hmac-sha256:"
_SHOWN_DIGITS: Final = 4
_MIN_DIGITS_TO_SHOW: Final = 8
_ALNUM: Final = re.compile(r"[^\W_]")
_WORD: Final = re.compile(r"[^\W\d_]+")
_NUMBER_LIKE: Final = frozenset(
    {"PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "US_PASSPORT", "UK_NHS", "UK_NINO", "IBAN_CODE"}
)


@dataclass(frozen=True)
class Redactor:
    """Masks values and, with a key, hashes them. ``key`` never appears in any output."""

    key: bytes | None = None

    @property
    def hashing(self) -> str:
        """How evidence hashes were made, for the rule's metrics."""
        return f"HMAC-SHA256 keyed with {SALT_ENV}" if self.key else (
            f"none ({SALT_ENV} not set)"
        )

    def hash(self, entity: str, value: str) -> str | None:
        """A stable, keyed fingerprint of the normalised value; None without a salt."""
        if self.key is None:
            return None
        digest = hmac.new(self.key, normalise(entity, value).encode("utf-8"), hashlib.sha256)
        return HASH_PREFIX + digest.hexdigest()[:32]

    def evidence(self, entity: str, value: str) -> dict[str, JsonValue]:
        return {"masked": mask(entity, value), "hash": self.hash(entity, value)}


def redactor_from(environ: Mapping[str, str] | None = None) -> Redactor:
    salt = (os.environ if environ is None else environ).get(SALT_ENV, "")
    return Redactor(salt.encode("utf-8") if salt else None)


def normalise(entity: str, value: str) -> str:
    """The form that is hashed: spelling variants of one value hash alike."""
    text = unicodedata.normalize("NFKC", value).strip()
    if entity in _NUMBER_LIKE:
        return "".join(_ALNUM.findall(text)).upper()
    return " ".join(text.casefold().split())


def mask(entity: str, value: str) -> str:
    """A recognisable form of ``value`` that does not disclose it."""
    text = value.strip()
    if entity == "EMAIL_ADDRESS" and "@" in text:
        return _mask_email(text)
    if entity in _NUMBER_LIKE:
        return _mask_number(text)
    if entity == "IP_ADDRESS":
        head = re.split(r"[.:]", text, maxsplit=1)[0]
        return f"{head[:4]}.{MASK}" if head and len(head) < len(text) else MASK
    if entity == PERSON:
        initials = [word[0] for word in _WORD.findall(text)]
        return " ".join(f"{initial}{MASK}" for initial in initials) or MASK
    if entity == DATE_OF_BIRTH:
        return MASK
    return f"{text[:1]}{MASK}" if len(text) > 4 else MASK


# Where MLA402 and MLA403 point when the personal data they found is the model's class labels.
_LABEL_POINTER: Final = re.compile(r"(classes_?|classlabels_strings')$")
_LABEL_RULES: Final = frozenset({"MLA402", "MLA403"})


def report_labels(
    labels: list[object] | None, results: Sequence[RuleResult]
) -> list[object] | None:
    """The model's class labels as a report may show them.

    The report lists the loaded model's classes; when a personal-data rule found personal data
    among them, every text label is masked like a name (``J••• S•••``).
    """
    flagged = any(
        finding.rule_id in _LABEL_RULES and _LABEL_POINTER.search(finding.location.pointer or "")
        for result in results
        for finding in result.findings
    )
    if labels is None or not flagged:
        return labels
    return [mask(PERSON, label) if isinstance(label, str) else label for label in labels]


def _mask_email(text: str) -> str:
    local, _, domain = text.partition("@")
    labels = domain.split(".")
    suffix = f".{labels[-1]}" if len(labels) > 1 and labels[-1] else ""
    return f"{local[:1]}{MASK}@{domain[:1]}{MASK}{suffix}"


def _mask_number(text: str) -> str:
    characters = _ALNUM.findall(text)
    if len(characters) < _MIN_DIGITS_TO_SHOW:
        return MASK
    return MASK + "".join(characters[-_SHOWN_DIGITS:])
