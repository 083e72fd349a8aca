"""Strings with object paths from pickle and joblib streams, read without unpickling."""

from __future__ import annotations

import io
import pickle
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.compose import make_column_transformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import LabelEncoder, OneHotEncoder

from mlaudit.pii.pickle_strings import strings_in_bytes
from mlaudit.pii.strings import ArtifactStrings
from tests.fixtures.mutation import EDITS, Edit, mutate

TEXTS = ["write to alice.smith@example.com today", "bob.jones@corp.org called", "no one"] * 4
LABELS = ["Alice Smith", "Bob Jones", "Carl Cole"] * 4


def _tfidf() -> Any:
    return make_pipeline(TfidfVectorizer(token_pattern=r"\S+"), LogisticRegression()).fit(
        TEXTS, LABELS
    )


def _encoders() -> Any:
    frame = pd.DataFrame({"city": ["Paris", "Rome", "Oslo"] * 4, "email": TEXTS, "x": range(12)})
    transformer = make_column_transformer((OneHotEncoder(), ["city", "email"]),
                                          remainder="passthrough")
    return make_pipeline(transformer, LogisticRegression()).fit(frame, LABELS)


def _serialised(model: object) -> dict[str, bytes]:
    dumps = {f"pickle-{p}": pickle.dumps(model, protocol=p) for p in range(6)}
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    dumps["joblib"] = buffer.getvalue()
    return dumps


def _paths(found: ArtifactStrings) -> dict[str, tuple[str, ...]]:
    return dict(found.by_path)


TFIDF = _serialised(_tfidf())
ENCODERS = _serialised(_encoders())
LABEL_ENCODER = _serialised(LabelEncoder().fit(np.array(LABELS)))


@pytest.mark.parametrize("how", list(TFIDF))
def test_vocabulary_and_classes_of_a_text_pipeline(how: str) -> None:
    paths = _paths(strings_in_bytes(TFIDF[how]))
    assert "alice.smith@example.com" in paths["steps[0][1].vocabulary_"]
    assert set(paths["steps[1][1].classes_"]) == set(LABELS)


@pytest.mark.parametrize("how", list(ENCODERS))
def test_categories_of_each_encoded_column(how: str) -> None:
    paths = _paths(strings_in_bytes(ENCODERS[how]))
    assert paths["steps[0][1].transformers_[0][1].categories_[0]"] == ("Oslo", "Paris", "Rome")
    assert "bob.jones@corp.org called" in paths["steps[0][1].transformers_[0][1].categories_[1]"]
    assert set(paths["steps[0][1].feature_names_in_"]) == {"city", "email", "x"}


@pytest.mark.parametrize("how", list(LABEL_ENCODER))
def test_string_arrays_are_decoded_from_their_raw_bytes(how: str) -> None:
    # LabelEncoder fitted on a NumPy array keeps classes_ as a '<U11' array: raw UCS-4 bytes.
    assert set(_paths(strings_in_bytes(LABEL_ENCODER[how]))["classes_"]) == set(LABELS)


def test_sets_and_dict_subclasses_keep_their_items() -> None:
    from collections import OrderedDict

    state = {"stop_words_": {"carol@x.net", "dave@y.org"}, "names": OrderedDict(a="Eve Adams")}
    for protocol in (2, 4, 5):
        paths = _paths(strings_in_bytes(pickle.dumps(state, protocol=protocol)))
        assert set(paths["<root>"]) >= {"stop_words_", "names"}
        assert set(paths["[#0]"]) == {"carol@x.net", "dave@y.org"}
        assert set(paths["[#1]"]) == {"a", "Eve Adams"}


def test_a_dict_key_never_becomes_part_of_a_path() -> None:
    found = strings_in_bytes(pickle.dumps({"frank@z.com": ["nested value"]}, protocol=4))
    assert all("frank" not in path for path, _ in found.by_path)
    assert _paths(found)["[#0]"] == ("nested value",)


def test_a_broken_stream_yields_what_was_read_before_the_break() -> None:
    data = TFIDF["pickle-4"]
    found = strings_in_bytes(data[: len(data) * 2 // 3])
    assert found.problems
    assert any("alice.smith@example.com" in strings for _, strings in found.by_path)


def test_nothing_is_unpickled(tmp_path: Any) -> None:
    class Hostile:
        def __reduce__(self) -> tuple[Any, ...]:
            import os

            return (os.system, (f"touch {tmp_path / 'CANARY'}",))

    found = strings_in_bytes(pickle.dumps({"who": "grace@h.org", "payload": Hostile()}))
    assert "grace@h.org" in _paths(found)["<root>"]
    assert not (tmp_path / "CANARY").exists()


SEEDS = [TFIDF["pickle-2"], TFIDF["joblib"], ENCODERS["pickle-5"], LABEL_ENCODER["joblib"]]


@settings(max_examples=150, deadline=None)
@given(seed=st.sampled_from(SEEDS), edits=EDITS)
def test_mutated_streams_never_crash_the_reader(seed: bytes, edits: list[Edit]) -> None:
    found = strings_in_bytes(mutate(seed, edits), time_budget_s=5.0)
    assert found.distinct <= found.total
    for path, strings in found.by_path:
        assert isinstance(path, str)
        assert all(isinstance(s, str) for s in strings)


def _many_strings(count: int) -> bytes:
    """A pickle of ``count`` short distinct strings (the shape that made MLA402 slow)."""
    return pickle.dumps([f"token{index:07d}" for index in range(count)], protocol=4)


def test_the_cap_keeps_the_first_strings_and_counts_the_rest() -> None:
    found = strings_in_bytes(_many_strings(5_000), max_strings=1_000)
    assert found.total == 1_000
    assert found.unread == 4_000
    assert found.truncated
    (_, strings), = found.by_path
    assert strings[:2] == ("token0000000", "token0000001")


def test_under_the_cap_nothing_is_unread() -> None:
    found = strings_in_bytes(_many_strings(500), max_strings=1_000)
    assert (found.total, found.unread, found.truncated) == (500, 0, False)


def test_the_walk_is_linear_in_the_strings() -> None:
    """Ten times the strings may cost at most about ten times the time (with slack for noise)."""
    import time

    timings = []
    for count in (20_000, 200_000):
        data = _many_strings(count)
        start = time.perf_counter()
        strings_in_bytes(data, max_strings=count)
        timings.append(time.perf_counter() - start)
    assert timings[1] < 20 * max(timings[0], 0.01), timings
