"""MLA201-204 through the CLI: each fires on a brittle model and stays quiet on a robust one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from mlaudit.robustness.certify import CERTIFY_CHUNK_ROWS
from mlaudit.robustness.evasion import ATTACK_CHUNK_ROWS
from tests.conftest import CliResult, Runner
from tests.robustness.models import separated

TARGET = "label"


@dataclass(frozen=True)
class Case:
    model: Path
    data: Path


def _case(root: Path, name: str, estimator: object, gap: float, *, regress: bool = False) -> Case:
    frame, labels = separated(rows=240, gap=gap, seed=3)
    if not gap:
        # Overlapping classes: flip a fifth of the labels so a deep forest memorises noise.
        flip = np.random.default_rng(4).random(len(labels)) < 0.2
        labels = np.where(flip, 1 - labels, labels)
    target = frame["lead"] * 10 + labels if regress else labels
    estimator.fit(frame, target)  # type: ignore[attr-defined]
    data = root / f"{name}.csv"
    frame.assign(**{TARGET: target}).to_csv(data, index=False)
    model = root / f"{name}.joblib"
    joblib.dump(estimator, model)
    return Case(model, data)


def _scan(run_cli: Runner, case: Case, *extra: str) -> CliResult:
    return run_cli(
        "scan", case.model, "--data", case.data, "--target", TARGET, "--select", "MLA2", *extra
    )


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    root = tmp_path_factory.mktemp("robustness")
    return {
        "brittle forest": _case(root, "forest", RandomForestClassifier(30, random_state=0), 0.0),
        "robust stump": _case(root, "stump", DecisionTreeClassifier(max_depth=1), 0.3),
        "brittle linear": _case(root, "linear", LogisticRegression(C=1e3, max_iter=2000), 0.0),
        "robust linear": _case(root, "robust", LogisticRegression(C=1e3, max_iter=2000), 0.3),
        "regressor": _case(
            root, "regressor", RandomForestRegressor(20, random_state=0), 0.0, regress=True
        ),
    }


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "robustness.toml"
    path.write_text(text)
    return str(path)


def test_brittle_forest_fires_mla201_mla203_and_mla204(
    run_cli: Runner, cases: dict[str, Case], tmp_path: Path
) -> None:
    config = _config(
        tmp_path,
        "[rules.MLA201]\nepsilon = 0.4\n[rules.MLA203]\nepsilon = 0.4\n"
        "[rules.MLA204]\nnoise = 0.2\n",
    )
    result = _scan(run_cli, cases["brittle forest"], "--config", config)
    black_box = result.result("MLA201")
    assert black_box["status"] == "failed"
    assert {f["location"]["pointer"] for f in black_box["findings"]} == {"linf", "l2"}
    linf = black_box["metrics"]["norms"]["linf"]
    assert linf["success_rate"]["estimate"] == 1.0
    # The grid, with the judged ε in it.
    assert [p["epsilon"] for p in linf["robust_accuracy"]] == [0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.5]
    assert sum(linf["perturbation"]["histogram"]["counts"]) == linf["perturbation"]["found"]
    assert linf["perturbation"]["p10"] <= linf["perturbation"]["median"]
    assert black_box["queries"] > 0
    verification = result.result("MLA203")
    assert verification["status"] == "failed"
    [finding] = verification["findings"]
    assert "(certified) and" in finding["message"]
    certified = verification["metrics"]["robust_accuracy"]["certified"]
    attack = verification["metrics"]["robust_accuracy"]["attack"]
    assert all(c["estimate"] <= a["estimate"] for c, a in zip(certified, attack, strict=True))
    assert result.result("MLA204")["status"] == "failed"
    assert result.result("MLA202")["status"] == "skipped"
    assert "RandomForestClassifier exposes no gradients" in result.result("MLA202")["reason"]


def test_robust_stump_is_quiet_and_certified(run_cli: Runner, cases: dict[str, Case]) -> None:
    result = _scan(run_cli, cases["robust stump"])
    for rule_id in ("MLA201", "MLA203", "MLA204"):
        assert result.result(rule_id)["status"] == "passed", result.result(rule_id)
    at_epsilon = {
        p["epsilon"]: p for p in result.result("MLA203")["metrics"]["robust_accuracy"]["certified"]
    }
    assert at_epsilon[0.05]["estimate"] == 1.0
    assert result.exit_code == 0


def test_mla202_fires_on_a_linear_model_at_a_large_epsilon(
    run_cli: Runner, cases: dict[str, Case], tmp_path: Path
) -> None:
    config = _config(tmp_path, "[rules.MLA202]\nepsilon = 0.3\n")
    result = _scan(run_cli, cases["brittle linear"], "--config", config)
    gradient = result.result("MLA202")
    assert gradient["status"] == "failed"
    curves = gradient["metrics"]["robust_accuracy"]["linf"]
    assert set(curves) == {"fgsm", "pgd", "survival_at_epsilon"}
    # PGD is at least as strong as FGSM at every ε.
    for fgsm, pgd in zip(curves["fgsm"], curves["pgd"], strict=True):
        assert pgd["estimate"] <= fgsm["estimate"] + 0.02
    assert result.result("MLA203")["status"] == "skipped"


def test_mla202_quiet_on_a_linear_model_with_a_margin(
    run_cli: Runner, cases: dict[str, Case]
) -> None:
    result = _scan(run_cli, cases["robust linear"])
    assert result.result("MLA202")["status"] == "passed"
    assert result.result("MLA201")["status"] == "passed"


def test_immutable_features_are_never_perturbed(
    run_cli: Runner, cases: dict[str, Case], tmp_path: Path
) -> None:
    config = _config(tmp_path, '[rules.MLA201]\nimmutable = ["lead"]\n')
    result = _scan(run_cli, cases["robust stump"], "--config", config, "--select", "MLA201")
    metrics = result.result("MLA201")["metrics"]
    assert metrics["features"]["frozen"] == {"lead": "immutable (configured)"}
    assert metrics["features"]["integer"] == ["count"]
    # The stump only reads ``lead``: with it frozen, nothing can flip it.
    assert metrics["norms"]["linf"]["success_rate"]["estimate"] == 0.0


def test_regressors_measure_output_change(run_cli: Runner, cases: dict[str, Case]) -> None:
    result = _scan(run_cli, cases["regressor"])
    for rule_id in ("MLA201", "MLA203", "MLA204"):
        metrics = result.result(rule_id)["metrics"]
        assert metrics["task"] == "regression"
        assert metrics["tolerance"] > 0
    assert "regressors" in result.result("MLA202")["reason"]


def test_same_seed_same_numbers(run_cli: Runner, cases: dict[str, Case]) -> None:
    first = _scan(run_cli, cases["brittle forest"], "--select", "MLA201").result("MLA201")
    second = _scan(run_cli, cases["brittle forest"], "--select", "MLA201").result("MLA201")
    assert first["metrics"] == second["metrics"]
    assert first["queries"] == second["queries"]


def test_single_class_data_is_skipped_with_the_reason(
    run_cli: Runner, cases: dict[str, Case], tmp_path: Path
) -> None:
    frame = pd.read_csv(cases["robust stump"].data)
    one_class = tmp_path / "zeros.csv"
    frame[frame["lead"] < 0.2].to_csv(one_class, index=False)
    result = run_cli(
        "scan",
        cases["robust stump"].model,
        "--data",
        one_class,
        "--target",
        TARGET,
        "--select",
        "MLA201",
    )
    assert result.result("MLA201")["status"] == "skipped"
    assert "single class" in result.result("MLA201")["reason"]


MISBEHAVING = """
import numpy as np

class Misbehaving:
    classes_ = np.array([0, 1])

    def __init__(self, failure):
        self.failure = failure

    def predict(self, frame):
        if len(frame) > 300:  # the data itself is fine; the attack's batches are not
            if self.failure == "raise":
                raise ValueError("backend refused the batch")
            return np.zeros((len(frame), 2))
        return (frame["lead"].to_numpy() > 0.5).astype(int)

raising = Misbehaving("raise")
wrong_shape = Misbehaving("shape")
"""


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("raising", "ValueError: backend refused the batch"),
        ("wrong_shape", "predict returned shape"),
    ],
)
def test_a_misbehaving_model_is_a_rule_error_not_a_crash(
    run_cli: Runner,
    cases: dict[str, Case],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    entry: str,
    reason: str,
) -> None:
    (tmp_path / "misbehaving_model.py").write_text(MISBEHAVING)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_cli(
        "scan",
        f"misbehaving_model:{entry}",
        "--data",
        cases["robust stump"].data,
        "--target",
        TARGET,
        "--select",
        "MLA201",
    )
    black_box = result.result("MLA201")
    assert black_box["status"] == "error"
    assert reason in black_box["reason"]
    assert result.exit_code == 1  # an incomplete audit fails closed


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[rules.MLA201]\nepsilon = "big"\n', "epsilon for rule MLA201 must be a number"),
        ("[rules.MLA204]\nuse_bound = 1\n", "use_bound for rule MLA204 must be true or false"),
        ('[rules.MLA201]\nimmutable = "lead"\n', "immutable for rule MLA201 must be a list"),
    ],
)
def test_mistyped_options_exit_2(
    run_cli: Runner, cases: dict[str, Case], tmp_path: Path, table: str, message: str
) -> None:
    result = _scan(run_cli, cases["robust stump"], "--config", _config(tmp_path, table))
    assert result.exit_code == 2
    assert message in result.stderr


def test_unknown_immutable_feature_exits_2_naming_it(
    run_cli: Runner, cases: dict[str, Case], tmp_path: Path
) -> None:
    config = _config(tmp_path, '[rules.MLA204]\nimmutable = ["postcode"]\n')
    result = _scan(run_cli, cases["robust stump"], "--config", config, "--select", "MLA204")
    assert result.exit_code == 2
    assert "postcode" in result.stderr
    assert not (result.output_dir / "report.json").exists()


@pytest.fixture(scope="module")
def continuous_linear(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """A logistic regression on continuous features: its exact radii have a closed form."""
    root = tmp_path_factory.mktemp("linear")
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(0.0, [1.0, 2.0, 0.5], size=(400, 3)), columns=["a", "b", "c"])
    labels = (frame["a"] + 0.5 * frame["b"] + rng.normal(0, 0.7, 400) > 0).astype(int)
    model = LogisticRegression().fit(frame, labels)
    data = root / "gauss.csv"
    frame.assign(**{TARGET: labels}).to_csv(data, index=False)
    path = root / "gauss.joblib"
    joblib.dump(model, path)
    return Case(path, data)


def _by_epsilon(curve: list[dict[str, float]]) -> dict[float, float]:
    return {point["epsilon"]: point["estimate"] for point in curve}


def test_gradient_attacks_agree_with_the_exact_radii(
    run_cli: Runner, continuous_linear: Case
) -> None:
    """Regression: PGD's float32 overshoot of ε (~4e-8) made every flip be discarded."""
    result = _scan(run_cli, continuous_linear, "--select", "MLA202")
    curves = result.result("MLA202")["metrics"]["robust_accuracy"]
    for norm in ("linf", "l2"):
        exact = _by_epsilon(curves[norm]["exact"]["robust_accuracy"])
        pgd = _by_epsilon(curves[norm]["pgd"])
        for epsilon, value in exact.items():
            # An attack never beats the exact answer, and PGD on a linear model reaches it
            # (one row of 200 either way for rows that sit on ε itself).
            assert pgd[epsilon] >= value - 1e-9
            assert pgd[epsilon] - value <= 0.005 + 1e-9, (norm, epsilon)
        assert exact[0.5] < exact[0.01]


def test_black_box_l2_has_its_own_budget_and_reaches_the_exact_answer(
    run_cli: Runner, continuous_linear: Case
) -> None:
    # The standard budget: quick's 500 queries leave HopSkipJump's L2 a row or two short.
    result = _scan(run_cli, continuous_linear, "--profile", "standard")
    norms = result.result("MLA201")["metrics"]["norms"]
    assert norms["l2"]["queries"] > 0.5 * norms["linf"]["queries"]
    exact = result.result("MLA202")["metrics"]["robust_accuracy"]
    for norm in ("linf", "l2"):
        attack = _by_epsilon(norms[norm]["robust_accuracy"])
        truth = _by_epsilon(exact[norm]["exact"]["robust_accuracy"])
        for epsilon in (0.05, 0.1, 0.2):
            assert truth[epsilon] - 1e-9 <= attack[epsilon] <= truth[epsilon] + 0.02, (
                norm,
                epsilon,
            )


def test_a_breach_of_the_default_epsilon_is_at_most_medium(
    run_cli: Runner, continuous_linear: Case, tmp_path: Path
) -> None:
    # Thresholds every row near the boundary breaches; 200 rows have some within ε = 0.05.
    strict = "high_below = 0.999\nmedium_below = 1.0\nuse_bound = false\n"
    default = _scan(
        run_cli,
        continuous_linear,
        "--select",
        "MLA201",
        "--profile",
        "standard",
        "--config",
        _config(tmp_path, f"[rules.MLA201]\n{strict}"),
    ).result("MLA201")
    assert default["metrics"]["threat_model"] == "default"
    assert {f["severity"] for f in default["findings"]} == {"medium"}
    assert "default threat model" in default["findings"][0]["message"]
    stated = _scan(
        run_cli,
        continuous_linear,
        "--select",
        "MLA201",
        "--profile",
        "standard",
        "--config",
        _config(tmp_path, f"[rules.MLA201]\nepsilon = 0.1\n{strict}"),
    ).result("MLA201")
    assert stated["metrics"]["threat_model"] == "configured"
    assert {f["severity"] for f in stated["findings"]} == {"high"}


def test_feature_epsilon_states_a_threat_model_per_family(
    run_cli: Runner, continuous_linear: Case, tmp_path: Path
) -> None:
    config = _config(tmp_path, '[rules.MLA201.feature_epsilon]\n"[ab]" = 0.3\nc = 0\n')
    metrics = _scan(run_cli, continuous_linear, "--select", "MLA201", "--config", config).result(
        "MLA201"
    )["metrics"]
    assert metrics["threat_model"] == "configured"
    assert metrics["features"]["frozen"] == {"c": "ε of 0 (configured)"}
    assert set(metrics["features"]["unit"]) == {"a", "b"}


def test_regressors_are_judged_against_their_own_error_and_not_high_by_default(
    run_cli: Runner, cases: dict[str, Case], tmp_path: Path
) -> None:
    strict = "high_below = 0.999\nmedium_below = 1.0\nuse_bound = false\n"
    config = _config(tmp_path, f"[rules.MLA201]\nepsilon = 0.5\n{strict}")
    result = _scan(run_cli, cases["regressor"], "--select", "MLA201", "--config", config)
    black_box = result.result("MLA201")
    assert "holdout RMSE" in black_box["metrics"]["tolerance_basis"]
    # ε stated but not the output change that counts: still at most medium.
    assert {f["severity"] for f in black_box["findings"]} == {"medium"}
    config = _config(tmp_path, f"[rules.MLA201]\nepsilon = 0.5\nthreshold = 0.5\n{strict}")
    black_box = _scan(run_cli, cases["regressor"], "--select", "MLA201", "--config", config).result(
        "MLA201"
    )
    assert black_box["metrics"]["tolerance"] == 0.5
    assert {f["severity"] for f in black_box["findings"]} == {"high"}


def test_epsilon_below_an_integer_step_is_reported(run_cli: Runner, tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    pixels = rng.integers(0, 17, size=(300, 4))
    frame = pd.DataFrame(pixels, columns=[f"pixel_{i}" for i in range(4)])
    labels = (frame.sum(axis=1) > 32).astype(int)
    model = tmp_path / "digits.joblib"
    joblib.dump(LogisticRegression(max_iter=1000).fit(frame, labels), model)
    data = tmp_path / "digits.csv"
    frame.assign(**{TARGET: labels}).to_csv(data, index=False)
    result = _scan(run_cli, Case(model, data), "--select", "MLA201")
    black_box = result.result("MLA201")
    assert len(black_box["metrics"]["below_integer_step"]) == 4
    [note] = [f for f in black_box["findings"] if f["location"]["pointer"] == "integer-step"]
    assert note["severity"] == "info"
    assert "pixel_0" in note["message"]


class _SlowClock:
    """``time`` as MLA203's module sees it, where every reading is an hour later than the
    last: certifying a row looks slower than any budget, without waiting for it."""

    def __init__(self) -> None:
        import time

        self._now = time.monotonic()

    def monotonic(self) -> float:
        self._now += 3600.0
        return self._now


def test_mla203_scales_down_instead_of_overrunning_its_budget(
    run_cli: Runner, cases: dict[str, Case], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: a verifier slower than its budget certifies what fits and says so; the rows
    it leaves are uncertified (radius 0), which keeps the certified bound sound."""
    import mlaudit.robustness.chunks as chunks
    import mlaudit.rules.robustness as robustness

    clock = _SlowClock()
    monkeypatch.setattr(robustness, "time", clock)
    monkeypatch.setattr(chunks, "time", clock)
    result = _scan(run_cli, cases["brittle forest"], "--select", "MLA203", "--isolation", "none")
    verification = result.result("MLA203")
    assert verification["status"] != "error"
    # The first chunk always runs; the next one is projected past the half budget.
    assert verification["metrics"]["scaled_down"].startswith(
        f"rows certified: {CERTIFY_CHUNK_ROWS} of "
    )
    certified = verification["metrics"]["robust_accuracy"]["certified"]
    attack = verification["metrics"]["robust_accuracy"]["attack"]
    assert all(c["estimate"] <= a["estimate"] for c, a in zip(certified, attack, strict=True))


def test_mla201_attacks_fewer_rows_and_says_so_when_its_budget_runs_short(
    run_cli: Runner, cases: dict[str, Case], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Issue 19: chunks of rows are attacked while the budget allows; the numbers then speak
    for the rows before the first one left unattacked, never an error."""
    import mlaudit.robustness.chunks as chunks

    monkeypatch.setattr(chunks, "time", _SlowClock())
    config = _config(tmp_path, '[rules.MLA201]\nsamples = 220\nqueries = 200\nnorms = ["linf"]\n')
    result = _scan(
        run_cli, cases["brittle forest"], "--select", "MLA201", "--isolation", "none",
        "--config", config,
    )
    black_box = result.result("MLA201")
    assert black_box["status"] != "error"
    linf = black_box["metrics"]["norms"]["linf"]
    assert linf["attacked"] == ATTACK_CHUNK_ROWS
    assert linf["scaled_down"].startswith(f"rows attacked (linf): {ATTACK_CHUNK_ROWS} of ")
    assert linf["perturbation"]["found"] > 0
