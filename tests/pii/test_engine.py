"""The offline engine: no network, names from shipped lists, hints, exact routing."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlaudit.pii.analyzer import EngineUnavailable, PiiEngine, check_nlp_model
from mlaudit.pii.entities import ENTITY_NAMES
from mlaudit.pii.hints import NO_HINT, hint_for
from mlaudit.pii.recognizers import NameRecognizer, OfflineEmailRecognizer

ALL = frozenset(ENTITY_NAMES)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the personal-data engine tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _found(engine: PiiEngine, text: str, column: str = "") -> set[tuple[str, str]]:
    hint = hint_for(column) if column else NO_HINT
    entities = engine.candidates(text, ALL, hint, 0.5)
    return {(d.entity, text[d.start : d.end]) for d in engine.analyse(text, entities, hint, 0.5)}


def test_email_validation_uses_the_bundled_suffix_list(no_network: None) -> None:
    from mlaudit.pii import recognizers

    recognizers._offline_suffixes.cache_clear()
    recognizer = OfflineEmailRecognizer()
    assert recognizer.validate_result("ann@example.co.uk")
    assert not recognizer.validate_result("ann@example.notasuffix")


def test_the_offline_engine_finds_entities_without_a_network(
    engine: PiiEngine, no_network: None
) -> None:
    text = "Mail Mary Ann Smith at mary.smith@gmail.com, card 4111 1111 1111 1111."
    assert _found(engine, text) == {
        ("PERSON", "Mary Ann Smith"),
        ("EMAIL_ADDRESS", "mary.smith@gmail.com"),
        ("CREDIT_CARD", "4111 1111 1111 1111"),
    }
    assert "blank spaCy" in engine.description


def test_column_names_raise_confidence_where_values_alone_are_weak(engine: PiiEngine) -> None:
    assert _found(engine, "(212) 555-0143") == set()  # presidio: 0.4 without context
    assert _found(engine, "(212) 555-0143", "customer_phone") == {
        ("PHONE_NUMBER", "(212) 555-0143")
    }
    assert _found(engine, "Mary") == set()
    assert _found(engine, "Mary", "firstName") == {("PERSON", "Mary")}
    assert _found(engine, "1990-04-02") == set()
    assert _found(engine, "1990-04-02", "date_of_birth") == {("DATE_OF_BIRTH", "1990-04-02")}
    assert _found(engine, "Brown", "product_name") == set()


def test_one_entity_per_stretch_of_text(engine: PiiEngine) -> None:
    # 9434765919 passes the NHS checksum and is a valid US number: the column decides.
    assert _found(engine, "943 476 5919", "phone") == {("PHONE_NUMBER", "943 476 5919")}
    assert _found(engine, "943 476 5919", "nhs_number") == {("UK_NHS", "943 476 5919")}


def test_names_need_a_first_name_and_a_surname() -> None:
    names = NameRecognizer()
    assert [s[:2] for s in names.spans("Spoke with Mary A. Jones today")] == [(11, 24)]
    assert names.spans("Mark the grant as closed") == []
    assert [s[2] for s in names.spans("SMITH, MARY")] == [NameRecognizer.PAIR_SCORE]
    assert [s[2] for s in names.spans("Mary")] == [NameRecognizer.SINGLE_SCORE]


def test_a_missing_spacy_model_is_an_error_not_a_download(no_network: None) -> None:
    check_nlp_model(None)
    check_nlp_model("blank")
    with pytest.raises(EngineUnavailable, match="never downloads"):
        check_nlp_model("en_core_web_nonexistent")


FRAGMENTS = st.sampled_from([
    "call", "phone", "Mary Smith", "john@example.com", "(212) 555-0143", "4111 1111 1111 1111",
    "536-22-8726", "DE89 3704 0044 0532 0130 00", "192.168.12.4", "nhs", "943 476 5919",
    "the", "invoice", "1990-04-02", ",", "\n", "Dr.", "ssn", "Jones",
])


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(FRAGMENTS, min_size=1, max_size=8),
       column=st.sampled_from(["notes", "phone", "ssn", "name", "dob"]))
def test_routing_never_loses_a_result(engine: PiiEngine, parts: list[str], column: str) -> None:
    """Running only the candidates' recognizers finds exactly what running all of them does."""
    text = " ".join(parts)
    hint = hint_for(column)
    routed = engine.analyse(text, engine.candidates(text, ALL, hint, 0.5), hint, 0.5)
    everything = engine.analyse(text, ALL, hint, 0.5)
    assert routed == everything


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("card 4111 1111 1111 1111 on file", True),
        ("pay with 4111-1111-1111-1111.", True),
        ("leaf_value=0.4111111111111111 -0.2", False),
        ("threshold=4111111111111111e-20", False),
        ("tree_sizes=1047 1474 1355 1381 1578 1681", False),
    ],
)
def test_card_numbers_are_not_read_out_of_numbers(text: str, found: bool) -> None:
    from mlaudit.pii.recognizers import DigitsNotInNumbersCreditCardRecognizer

    results = DigitsNotInNumbersCreditCardRecognizer().analyze(text, ["CREDIT_CARD"])
    assert bool(results) is found
