"""MLA801 through the CLI: the serving profile's figures, and its limits gating the run.

MLA802 (serving code) is tested case by case with its bandit tests in tests/serving/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from mlaudit.rules.serving import ServingCode, ServingProfile
from mlaudit.testing import assert_rule_contract
from tests.conftest import Runner

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "serving"
# Short timing budgets: these tests are about the figures and the gate, not their precision.
FAST = "latency_budget_s = 0.4\n"


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("serving")
    frame = load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, 3, -1]]
    frame.columns = ["radius", "texture", "perimeter", "area", "y"]
    frame.to_csv(root / "data.csv", index=False)
    model = LogisticRegression(max_iter=500).fit(frame.drop(columns="y"), frame["y"])
    joblib.dump(model, root / "model.joblib")
    return root / "model.joblib", root / "data.csv"


def _scan(run_cli: Runner, tmp_path: Path, model: tuple[Path, Path], options: str) -> Any:
    (tmp_path / "mlaudit.toml").write_text(f"[rules.MLA801]\n{FAST}{options}")
    return run_cli("scan", model[0], "--data", model[1], "--target", "y",
                   "--select", "MLA801", "--fail-on", "medium")


def test_contracts() -> None:
    assert_rule_contract(ServingProfile)
    assert_rule_contract(ServingCode)


def test_mla801_reports_a_sane_profile_and_passes_without_limits(
    run_cli: Runner, tmp_path: Path, small_model: tuple[Path, Path]
) -> None:
    result = _scan(run_cli, tmp_path, small_model, "")
    mla801 = result.result("MLA801")
    assert mla801["status"] == "passed", mla801.get("reason")
    assert mla801["findings"] == []
    assert result.exit_code == 0
    metrics = mla801["metrics"]
    p50, p95, p99 = (metrics[f"p{p}_ms"] for p in (50, 95, 99))
    assert 0 < p50["estimate"] <= p95["estimate"] <= p99["estimate"] < 1000
    for interval in (p50, p95, p99):
        assert interval["low"] <= interval["estimate"] <= interval["high"]
    latency = metrics["latency"]
    assert latency["calls"] >= 20  # 0.4 s of a linear model, on a busy machine too
    assert latency["warmup_calls"] > 0
    assert isinstance(latency["converged"], bool)
    assert [t["batch_size"] for t in metrics["throughput"]] == [1, 32, 1024]
    one, big = metrics["rows_per_s_batch_1"], metrics["rows_per_s_batch_1024"]
    # Batching amortises the per-call overhead of a linear model many times over.
    assert big["estimate"] > 5 * one["estimate"] > 0
    assert metrics["artifact_mb"] == pytest.approx(small_model[0].stat().st_size / 1e6, abs=1e-3)
    assert 0 < metrics["load_s"] < 30
    # Loaded in the isolated worker: the fork-fresh high-water mark is the measurement.
    assert metrics["load_memory_method"].startswith("peak resident set growth")
    assert 0 <= metrics["load_memory_mb"] < 500
    assert metrics["rows_sampled"] == 512
    # Every row timed is a query of the model.
    assert mla801["queries"] >= latency["calls"] + 1024
    html = (result.output_dir / "report.html").read_text()
    assert "<title>Single-row latency</title>" in html
    assert "<title>Throughput by batch size</title>" in html


def test_mla801_tiny_latency_limit_fires(
    run_cli: Runner, tmp_path: Path, small_model: tuple[Path, Path]
) -> None:
    result = _scan(run_cli, tmp_path, small_model,
                   'max_p99_ms = 0.000001\nmin_rows_per_s = 1e12\nseverity = "high"\n')
    findings = {f["title"]: f for f in result.result("MLA801")["findings"]}
    p99 = findings["Single-row p99 latency over its limit"]
    assert p99["severity"] == "high"
    assert p99["confidence"] == "high"  # the whole interval is over the limit
    assert p99["evidence"]["max_p99_ms"] == pytest.approx(1e-6)
    assert findings["Throughput under its limit"]["evidence"]["batch_size"] == 1024
    assert result.exit_code == 1


def test_mla801_generous_limits_stay_quiet(
    run_cli: Runner, tmp_path: Path, small_model: tuple[Path, Path]
) -> None:
    result = _scan(run_cli, tmp_path, small_model,
                   "max_p99_ms = 60000\nmin_rows_per_s = 0.001\nmax_memory_mb = 100000\n")
    mla801 = result.result("MLA801")
    assert mla801["status"] == "passed"
    assert mla801["findings"] == []
    assert result.exit_code == 0


def test_mla801_memory_limit_fires(
    run_cli: Runner, tmp_path: Path, small_model: tuple[Path, Path]
) -> None:
    result = _scan(run_cli, tmp_path, small_model, "max_memory_mb = 0.000001\n")
    [finding] = result.result("MLA801")["findings"]
    assert finding["title"] == "Model memory over its limit"
    assert finding["severity"] == "medium"


def test_mla801_is_skipped_without_data(
    run_cli: Runner, tmp_path: Path, small_model: tuple[Path, Path]
) -> None:
    result = run_cli("scan", small_model[0], "--select", "MLA801")
    mla801 = result.result("MLA801")
    assert mla801["status"] == "skipped"
    assert "--data" in mla801["reason"]


def test_mla801_rejects_a_bad_limit(
    run_cli: Runner, tmp_path: Path, small_model: tuple[Path, Path]
) -> None:
    result = _scan(run_cli, tmp_path, small_model, "max_p99_ms = -1\n")
    assert result.exit_code == 2
    assert "max_p99_ms" in result.stderr


def test_mla802_reports_serving_tests_and_mla501_leaves_them(
    run_cli: Runner, small_model: tuple[Path, Path]
) -> None:
    result = run_cli("scan", small_model[0], "--source", FIXTURES,
                     "--select", "MLA802", "--select", "MLA501")
    mla802 = result.result("MLA802")
    assert mla802["status"] == "failed"
    ids = {f["location"]["pointer"] for f in mla802["findings"]}
    assert ids == {"MLS01", "MLS02", "MLS03", "MLS04", "MLS05"}
    debug = next(f for f in mla802["findings"] if f["location"]["artifact"].endswith(
        "mls02_fire_flask.py") and f["location"]["pointer"] == "MLS02")
    assert debug["severity"] == "high"
    assert debug["cwe"] == ["CWE-489"]
    assert (debug["location"]["line"], debug["location"]["column"]) == (16, 5)
    mla501_ids = {f["location"]["pointer"] for f in result.result("MLA501")["findings"]}
    assert not {i for i in mla501_ids if i.startswith("MLS")}
    assert "B104" in mla501_ids  # bandit's own bind-all test stays MLA501's



def test_mla801_without_isolation_still_measures_the_load(
    run_cli: Runner, tmp_path: Path, small_model: tuple[Path, Path]
) -> None:
    (tmp_path / "mlaudit.toml").write_text(f"[rules.MLA801]\n{FAST}")
    result = run_cli("scan", small_model[0], "--data", small_model[1], "--target", "y",
                     "--select", "MLA801", "--isolation", "none")
    metrics = result.result("MLA801")["metrics"]
    # Loaded in this very process: the peak if its high-water mark was current before the
    # load, else the net growth of the resident set (psutil reads it here, outside a sandbox).
    assert metrics["load_memory_method"].startswith(("peak resident set", "resident set after"))
    assert metrics["load_memory_mb"] >= 0
    assert metrics["load_s"] > 0


def test_mla801_on_a_model_given_in_memory_cannot_judge_memory(
    small_model: tuple[Path, Path],
) -> None:
    import mlaudit

    fitted = joblib.load(small_model[0])
    audit = mlaudit.scan(
        fitted, data=small_model[1], target="y", select="MLA801", profile="quick",
        rule_options={"MLA801": {"latency_budget_s": 0.3, "max_memory_mb": 1000}},
    )
    [result] = audit.results
    assert result.metrics["load_s"] is None
    assert result.metrics["load_memory_method"] == "not measured: the model was given in memory"
    [finding] = result.findings  # a limit it cannot check fails closed
    assert finding.title == "Model memory not measured"
    assert finding.confidence.value == "low"
