"""The model worker under real kernel isolation: a trusted hostile model reaches nothing, and
crashes and overruns end one rule, never the scan or its report."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlaudit.isolation.sandbox import landlock_abi
from tests.isolation.hostile import RULES, Arena, accepted, listener

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux layers")
ESCAPES = ("write", "connect", "subprocess", "system", "read")


@pytest.fixture
def arena(tmp_path: Path) -> Iterator[tuple[Arena, socket.socket]]:
    server = listener()
    try:
        yield Arena(tmp_path, server.getsockname()[1]), server
    finally:
        server.close()


def _escaped(arena: Arena, when: str) -> dict[str, bool]:
    """Which escapes left a trace outside the worker."""
    return {
        "write": Path(f"{arena.outside}.{when}").exists(),
        "subprocess": Path(f"{arena.touched}.subprocess.{when}").exists(),
        "system": Path(f"{arena.touched}.system.{when}").exists(),
    }


@linux_only
def test_hostile_model_reaches_nothing_in_the_worker(arena: tuple[Arena, socket.socket]) -> None:
    place, server = arena
    scan = place.scan(place.write_model("escape"))
    assert scan.report, scan.stderr
    for when in ("setstate", "predict"):
        outcomes = scan.warnings_about(when)
        assert set(outcomes) == set(ESCAPES), (when, scan.report["run"]["warnings"])
        assert "ok" not in outcomes.values(), outcomes
        assert not any(_escaped(place, when).values())
    assert accepted(server) == []
    assert {scan.result(r)["status"] for r in RULES} <= {"passed", "failed"}
    isolation = scan.report["run"]["isolation"]
    assert isolation["mode"] == "auto"
    assert all(isolation["layers"].values()), isolation
    assert scan.report["subject"]["model"]["classes"] == [0, 1]


@linux_only
def test_an_entry_point_model_runs_in_the_worker(arena: tuple[Arena, socket.socket]) -> None:
    place, server = arena
    scan = place.scan(place.write_entry_point("escape"))
    outcomes = scan.warnings_about("predict")
    assert set(outcomes) == set(ESCAPES), scan.stderr
    assert "ok" not in outcomes.values(), outcomes
    assert not any(_escaped(place, "predict").values())
    assert accepted(server) == []
    assert {scan.result(r)["status"] for r in RULES} <= {"passed", "failed"}
    assert scan.report["subject"]["model"]["framework"] == "python"


@linux_only
def test_the_same_model_escapes_without_isolation(arena: tuple[Arena, socket.socket]) -> None:
    """Proof the hostile model is live: in-process, every escape works."""
    place, server = arena
    scan = place.scan(place.write_model("escape"), "--isolation", "none")
    for when in ("setstate", "predict"):
        assert scan.warnings_about(when) == dict.fromkeys(ESCAPES, "ok")
        assert all(_escaped(place, when).values())
    assert sorted(accepted(server)) == [b"predict", b"setstate"]
    isolation = scan.report["run"]["isolation"]
    assert isolation["mode"] == "none"
    assert not any(isolation["layers"].values())
    assert "own process" in isolation["notes"][0]


@linux_only
@pytest.mark.parametrize(
    ("mode", "cause"),
    [
        ("segfault", "worker killed by SIGSEGV"),
        ("allocate", "MemoryError"),
        ("sleep", "MLA204 ran past its time budget of 2 s (worker killed)"),
    ],
)
def test_a_crash_or_overrun_fails_one_rule_and_the_scan_goes_on(
    arena: tuple[Arena, socket.socket], mode: str, cause: str
) -> None:
    place, _ = arena
    config = "[rules.MLA204]\nbudget_s = 2\n"
    scan = place.scan(place.write_model(mode), config=config)
    assert scan.code == 1, scan.stderr
    crashed = scan.result("MLA204")
    assert crashed["status"] == "error", crashed
    assert cause in crashed["reason"]
    assert scan.result("MLA702")["status"] in {"passed", "failed"}  # in a fresh worker
    assert any("MLA204" in reason for reason in scan.report["gate"]["reasons"])
    assert scan.seconds < 25


def test_strict_runs_only_with_every_layer(arena: tuple[Arena, socket.socket]) -> None:
    """Strict runs with every layer in force, or exits 2 with one line and no report where
    the kernel lacks one (Landlock is the layer kernels most often lack)."""
    place, _ = arena
    scan = place.scan(place.write_model("none"), "--isolation", "strict")
    if sys.platform.startswith("linux") and landlock_abi() > 0:
        assert scan.code == 0, scan.stderr
        isolation = scan.report["run"]["isolation"]
        assert isolation["mode"] == "strict"
        assert all(isolation["layers"].values())
    else:
        assert scan.code == 2
        assert scan.stderr.startswith("mlaudit: error: --isolation strict")
        assert scan.report == {}
