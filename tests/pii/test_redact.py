"""Redaction: masked forms disclose almost nothing, hashes need a secret salt."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from mlaudit.pii.redact import HASH_PREFIX, MASK, SALT_ENV, Redactor, mask, redactor_from

# The characters presidio's e-mail pattern accepts in a local part (``\w`` and specials).
LOCAL = st.text(
    alphabet=st.sampled_from(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~.")
    | st.characters(whitelist_categories=("L", "Nd")),
    min_size=1,
    max_size=40,
)
LABEL = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=12)


def test_masks_keep_only_a_recognisable_shape() -> None:
    assert mask("EMAIL_ADDRESS", "john.smith@example.com") == f"j{MASK}@e{MASK}.com"
    assert mask("PHONE_NUMBER", "(212) 555-0143") == f"{MASK}0143"
    assert mask("US_SSN", "536-22-8726") == f"{MASK}8726"
    assert mask("CREDIT_CARD", "4111 1111 1111 1111") == f"{MASK}1111"
    assert mask("PHONE_NUMBER", "5555-0143") == f"{MASK}0143"
    assert mask("PHONE_NUMBER", "555-0143") == MASK  # too short to show any digit
    assert mask("PERSON", "Mary Ann Smith") == f"M{MASK} A{MASK} S{MASK}"
    assert mask("IP_ADDRESS", "192.168.12.4") == f"192.{MASK}"
    assert mask("DATE_OF_BIRTH", "1990-04-02") == MASK
    assert mask("IBAN_CODE", "DE89 3704 0044 0532 0130 00") == f"{MASK}3000"


def test_hashes_need_the_salt_and_are_stable_across_spellings() -> None:
    assert Redactor().hash("EMAIL_ADDRESS", "a@b.com") is None
    keyed = redactor_from({SALT_ENV: "project secret"})
    first = keyed.hash("PHONE_NUMBER", "(212) 555-0143")
    assert first is not None
    assert first.startswith(HASH_PREFIX)
    assert keyed.hash("PHONE_NUMBER", "212.555.0143") == first
    assert keyed.hash("EMAIL_ADDRESS", " John@Example.com") == keyed.hash(
        "EMAIL_ADDRESS", "john@example.com"
    )
    assert redactor_from({SALT_ENV: "another secret"}).hash("PHONE_NUMBER", "2125550143") != first
    assert "secret" not in keyed.hashing


@given(local=LOCAL, domain=st.lists(LABEL, min_size=2, max_size=4))
def test_a_masked_address_never_shows_four_characters_of_its_local_part(
    local: str, domain: list[str]
) -> None:
    masked = mask("EMAIL_ADDRESS", f"{local}@{'.'.join(domain)}")
    shown_suffix = "." + domain[-1]  # the top-level label is shown on purpose
    for start in range(len(local) - 3):
        window = local[start : start + 4]
        assert window not in masked or window in shown_suffix


@given(digits=st.text(alphabet=string.digits, min_size=8, max_size=19),
       separator=st.sampled_from(["", " ", "-", "."]))
def test_a_masked_number_shows_at_most_its_last_four_digits(digits: str, separator: str) -> None:
    masked = mask("CREDIT_CARD", separator.join(digits))
    assert masked == MASK + digits[-4:]
