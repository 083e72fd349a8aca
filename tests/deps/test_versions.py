"""OSV range evaluation: property tests against the intervals the events describe."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st
from packaging.version import Version

from mlaudit.deps.versions import affects, fixed_versions, in_range, listed

versions = st.tuples(
    st.integers(0, 5), st.integers(0, 12), st.integers(0, 12)
).map(lambda t: Version(".".join(map(str, t))))


@given(versions, versions, versions)
def test_introduced_fixed_is_a_half_open_interval(v: Version, a: Version, b: Version) -> None:
    low, high = sorted((a, b))
    events = [{"introduced": str(low)}, {"fixed": str(high)}]
    assert in_range(v, events) == (low <= v < high)


@given(versions, versions, versions)
def test_last_affected_is_a_closed_interval(v: Version, a: Version, b: Version) -> None:
    low, high = sorted((a, b))
    assert in_range(v, [{"introduced": str(low)}, {"last_affected": str(high)}]) == (
        low <= v <= high
    )


@given(versions, versions)
def test_introduced_zero_covers_everything_below_the_fix(v: Version, fix: Version) -> None:
    assert in_range(v, [{"introduced": "0"}, {"fixed": str(fix)}]) == (v < fix)


@given(versions, st.lists(versions, min_size=4, max_size=4, unique=True), st.randoms())
def test_two_intervals_in_any_event_order(
    v: Version, bounds: list[Version], shuffle: random.Random
) -> None:
    a, b, c, d = sorted(bounds)
    events = [{"introduced": str(a)}, {"fixed": str(b)}, {"introduced": str(c)}, {"fixed": str(d)}]
    shuffle.shuffle(events)
    assert in_range(v, events) == (a <= v < b or c <= v < d)


@given(versions, versions)
def test_a_limit_caps_an_open_range(v: Version, limit: Version) -> None:
    assert in_range(v, [{"introduced": "0"}, {"limit": str(limit)}]) == (v < limit)


def test_explicit_versions_compare_as_pep440_and_as_text() -> None:
    assert listed("1.0.0", ["1.0"])
    assert listed("1.0-legacy", ["1.0-legacy"])  # not PEP 440: compared as text
    assert not listed("1.0.1", ["1.0"])
    assert affects("2.0", [], ["2.0.0"])


def test_unparseable_events_are_ignored() -> None:
    assert not in_range(Version("1.0"), [{"introduced": "not a version"}])
    assert affects("1.4.2", [[{"introduced": "0"}, {"fixed": "1.5.0"}]], [])
    assert not affects("garbage!", [[{"introduced": "0"}]], [])


def test_fixed_versions_are_those_above_in_the_ranges_that_contain_it() -> None:
    ranges = [
        [{"introduced": "0"}, {"fixed": "1.2.0"}],
        [{"introduced": "2.0"}, {"fixed": "2.3.1"}],
    ]
    assert fixed_versions("2.1", ranges) == ["2.3.1"]
    assert fixed_versions("1.0", ranges) == ["1.2.0"]
    assert fixed_versions("3.0", ranges) == []
