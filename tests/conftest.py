"""Shared fixtures: real models and data made by code, and an in-process CLI runner."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlaudit.cli.main import main

TARGET = "target"


@dataclass(frozen=True)
class Workspace:
    """Files for the CLI tests: train/holdout CSVs and models in every supported format."""

    root: Path
    train: Path
    holdout: Path
    rf_joblib: Path
    rf_pickle: Path
    pipeline_skops: Path
    pipeline_onnx: Path
    hostile: Path
    canary: Path
    feature_names: tuple[str, ...]


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.iloc[:, [*list(range(8)), -1]].copy()
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    shuffled = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    return shuffled.iloc[:340].reset_index(drop=True), shuffled.iloc[340:].reset_index(drop=True)


class _Hostile:
    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.canary}",))


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("workspace")
    train, holdout = _frames()
    train.to_csv(root / "train.csv", index=False)
    holdout.to_csv(root / "holdout.csv", index=False)
    features = train.drop(columns=[TARGET])
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(features, train[TARGET])
    joblib.dump(forest, root / "rf.joblib")
    (root / "rf.pkl").write_bytes(pickle.dumps(forest, protocol=4))
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    pipeline.fit(features, train[TARGET])
    import skops.io

    skops.io.dump(pipeline, root / "pipeline.skops")
    from skl2onnx import to_onnx

    onnx_model = to_onnx(
        pipeline, features.to_numpy(dtype="float32")[:1], options={"zipmap": False}
    )
    (root / "pipeline.onnx").write_bytes(onnx_model.SerializeToString())
    canary = root / "CANARY"
    (root / "hostile.pkl").write_bytes(pickle.dumps(_Hostile(canary), protocol=2))
    return Workspace(
        root=root,
        train=root / "train.csv",
        holdout=root / "holdout.csv",
        rf_joblib=root / "rf.joblib",
        rf_pickle=root / "rf.pkl",
        pipeline_skops=root / "pipeline.skops",
        pipeline_onnx=root / "pipeline.onnx",
        hostile=root / "hostile.pkl",
        canary=canary,
        feature_names=tuple(features.columns),
    )


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str
    output_dir: Path

    @property
    def report(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.output_dir / "report.json").read_text())
        return loaded

    def result(self, rule_id: str) -> dict[str, Any]:
        return next(r for r in self.report["results"] if r["rule_id"] == rule_id)


Runner = Callable[..., CliResult]


@pytest.fixture
def run_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Runner]:
    """Run ``mlaudit`` in-process in an empty working directory; returns code and output.

    Scans use the quick profile unless the test gives ``--profile``: the behavioural rules'
    sample sizes and query budgets come from the profile, and CLI tests are about the CLI.
    """
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("MLAUDIT_"):
            monkeypatch.delenv(name)

    def run(*args: str | Path, output_dir: Path | None = None) -> CliResult:
        arguments = [str(a) for a in args]
        out = output_dir or tmp_path / "out"
        if arguments and arguments[0] == "scan" and "-o" not in arguments:
            arguments += ["-o", str(out)]
        if arguments and arguments[0] == "scan" and "--profile" not in arguments:
            arguments += ["--profile", "quick"]
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main(arguments)
        captured = capsys.readouterr()
        code = exited.value.code
        return CliResult(code if isinstance(code, int) else 0, captured.out, captured.err, out)

    return run
