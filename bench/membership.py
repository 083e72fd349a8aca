"""Benchmark mlaudit's membership-inference rules against ART and a 64-reference LiRA.

Run from the repository root (ART is the ``art`` extra)::

    .venv/bin/python bench/membership.py              # ~4 min on 2 cores
    .venv/bin/python bench/membership.py --seeds 3    # fewer seeds for the stability column

Targets, each with half of its rows as members (``--train``) and half as non-members
(``--holdout``):

* ``rf-synthetic``: ``RandomForestClassifier()`` (100 trees, unlimited depth) on
  ``make_classification(n_samples=10000)``;
* ``rf-breast-cancer``: the same forest on ``load_breast_cancer`` (569 rows);
* ``lr-control``: ``StandardScaler + LogisticRegression(C=0.01)`` on the synthetic data, the
  quiet control.

Methods, all through the real rules (``run_audit``) except ART, which is timed on its own:
MLA301 (strongest reference-free attack), ART's ``MembershipInferenceBlackBox`` as MLA301 runs
it, MLA302 with 4 and 8 reference models (strongest of LiRA online/offline and RMIA), and
LiRA online with 64 reference models (per-row variances) as the strong reference. Every number
follows the rules' reporting: TPR at an FPR of ``a`` only with at least ``10 / a``
non-members, otherwise the number of holdout rows it needs. MLA302 with 8 references is rerun
with ``--seeds`` seeds for the AUC's standard deviation. Markdown goes to stdout, progress to
stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import joblib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import sklearn  # noqa: E402
from sklearn.datasets import load_breast_cancer, make_classification  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import mlaudit  # noqa: E402
from mlaudit.core.findings import RuleResult  # noqa: E402
from mlaudit.engine.run import EngineSettings, run_audit  # noqa: E402
from mlaudit.loaders import loader_for  # noqa: E402
from mlaudit.privacy.art_bridge import art_classifier, codec_for  # noqa: E402
from mlaudit.privacy.attacks import art_black_box  # noqa: E402
from mlaudit.privacy.evaluation import membership_data, privacy_rng  # noqa: E402
from mlaudit.privacy.outputs import query_outputs  # noqa: E402
from mlaudit.privacy.roc import evaluate_attack  # noqa: E402
from mlaudit.rules.base import Rule  # noqa: E402
from mlaudit.rules.privacy import (  # noqa: E402
    ReferenceFreeMembershipInference,
    ReferenceModelMembershipInference,
)
from mlaudit.subject.build import Subject, build_subject  # noqa: E402

TARGET = "label"
FPRS = (0.01, 0.001, 0.1)
STRONG_REFERENCES = 64


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    model: Any
    frame: pd.DataFrame


@dataclass(frozen=True)
class Row:
    target: str
    method: str
    attack: str
    metrics: dict[str, Any]
    seconds: float
    high: bool


def _synthetic() -> pd.DataFrame:
    x, y = make_classification(n_samples=10_000, random_state=0)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    frame[TARGET] = y
    return frame


def _breast_cancer() -> pd.DataFrame:
    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.rename(columns={"target": TARGET})
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)


def targets() -> list[Target]:
    synthetic = _synthetic()
    return [
        Target("rf-synthetic", "RandomForest(100 trees, unlimited depth), make_classification "
               "10,000 rows", RandomForestClassifier(random_state=0), synthetic),
        Target("rf-breast-cancer", "RandomForest(100 trees, unlimited depth), breast cancer "
               "569 rows", RandomForestClassifier(random_state=0), _breast_cancer()),
        Target("lr-control", "StandardScaler + LogisticRegression(C=0.01), make_classification "
               "10,000 rows", make_pipeline(StandardScaler(), LogisticRegression(C=0.01)),
               synthetic),
    ]


def write(target: Target, root: Path) -> Subject:
    half = len(target.frame) // 2
    train, holdout = target.frame.iloc[:half], target.frame.iloc[half:]
    target.model.fit(train.drop(columns=[TARGET]), train[TARGET])
    folder = root / target.name
    folder.mkdir()
    joblib.dump(target.model, folder / "model.joblib")
    train.to_csv(folder / "train.csv", index=False)
    holdout.to_csv(folder / "holdout.csv", index=False)
    return build_subject(
        str(folder / "model.joblib"), data=None, train=folder / "train.csv",
        holdout=folder / "holdout.csv", target=TARGET, source=None, requirements=[],
    )


def run_rule(subject: Subject, rule: type[Rule], seed: int = 0, **options: Any) -> RuleResult:
    settings = EngineSettings(seed=seed, rule_options={rule.meta.id: options})
    [result] = run_audit(subject, [rule], settings).results
    if result.status.value in ("error", "skipped"):
        raise RuntimeError(f"{rule.meta.id} {result.status.value}: {result.reason}")
    return result


def attack_metrics(result: RuleResult, attack: str | None = None) -> dict[str, Any]:
    name = attack or result.metrics["strongest"]
    attacks: list[dict[str, Any]] = result.metrics["attacks"]
    return next(a for a in attacks if a["attack"] == name)


def is_high(result: RuleResult) -> bool:
    return any(f.severity.value == "high" for f in result.findings)


def art_alone(subject: Subject) -> tuple[dict[str, Any], float]:
    """ART's black-box attack as MLA301 runs it, timed without MLA301's other attacks."""
    loader = loader_for(subject.model.format)
    assert loader is not None
    model = loader(subject.model, trusted=False, extra_allowed=frozenset())
    started = time.perf_counter()
    data = membership_data(subject, model, 0, 10_000)
    outputs = query_outputs(model, data.features, data.classes)
    classifier = art_classifier(model, codec_for(data.features), data.classes)
    scores = art_black_box(
        outputs, data.labels, data.member, classifier, privacy_rng(0, "art-black-box")
    )
    evaluation = evaluate_attack(
        scores.name, scores.scores, data.member, privacy_rng(0, "bootstrap"),
        fpr_levels=FPRS, resamples=1000,
    )
    return evaluation.as_metric(), time.perf_counter() - started


def measure(target: Target, root: Path, seeds: int, log: Callable[[str], None]) -> tuple[
    list[Row], list[float]
]:
    subject = write(target, root)
    rows: list[Row] = []
    log(f"{target.name}: MLA301")
    mla301 = run_rule(subject, ReferenceFreeMembershipInference)
    rows.append(Row(target.name, "MLA301 (strongest)", str(mla301.metrics["strongest"]),
                    attack_metrics(mla301), mla301.duration_s, is_high(mla301)))
    log(f"{target.name}: ART MembershipInferenceBlackBox")
    art, art_seconds = art_alone(subject)
    rows.append(Row(target.name, "ART MembershipInferenceBlackBox", "art-black-box", art,
                    art_seconds, False))
    aucs: list[float] = []
    for references in (4, 8):
        log(f"{target.name}: MLA302 k={references}")
        mla302 = run_rule(subject, ReferenceModelMembershipInference, references=references)
        rows.append(Row(target.name, f"MLA302 k={references}", str(mla302.metrics["strongest"]),
                        attack_metrics(mla302), mla302.duration_s, is_high(mla302)))
        if references == 8:
            aucs.append(float(attack_metrics(mla302)["auc"]["estimate"]))
    log(f"{target.name}: LiRA k={STRONG_REFERENCES}")
    strong = run_rule(subject, ReferenceModelMembershipInference, references=STRONG_REFERENCES)
    rows.append(Row(target.name, f"LiRA online k={STRONG_REFERENCES} (reference)", "lira-online",
                    attack_metrics(strong, "lira-online"), strong.duration_s, False))
    for seed in range(1, seeds):
        log(f"{target.name}: MLA302 k=8 seed {seed}")
        again = run_rule(subject, ReferenceModelMembershipInference, seed=seed, references=8)
        aucs.append(float(attack_metrics(again)["auc"]["estimate"]))
    return rows, aucs


def tpr(metrics: dict[str, Any], fpr: float) -> dict[str, Any]:
    return next(t for t in metrics["tpr_at_fpr"] if t["fpr"] == fpr)


def tpr_cell(metrics: dict[str, Any], fpr: float) -> str:
    measured = tpr(metrics, fpr)
    if not measured["evaluable"]:
        return f"needs >= {measured['needs_holdout_rows']} holdout rows"
    return f"{measured['estimate']:.1%} [{measured['low']:.1%}, {measured['high']:.1%}]"


def auc_cell(metrics: dict[str, Any]) -> str:
    auc = metrics["auc"]
    return f"{auc['estimate']:.3f} [{auc['low']:.3f}, {auc['high']:.3f}]"


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| target | method | attack | AUC [95% CI] | TPR@1%FPR [95% CI] | TPR@0.1%FPR | "
        "TPR@10%FPR | high finding | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        high = "yes" if row.high else ("-" if row.method.startswith(("ART", "LiRA")) else "no")
        lines.append(
            f"| {row.target} | {row.method} | {row.attack} | {auc_cell(row.metrics)} | "
            f"{tpr_cell(row.metrics, 0.01)} | {tpr_cell(row.metrics, 0.001)} | "
            f"{tpr_cell(row.metrics, 0.1)} | {high} | {row.seconds:.1f} |"
        )
    return lines


def _rate(metrics: dict[str, Any], fpr: float) -> float | None:
    measured = tpr(metrics, fpr)
    return float(measured["estimate"]) if measured["evaluable"] else None


def goals(rows: list[Row], aucs: dict[str, list[float]]) -> list[str]:
    def find(target: str, method: str) -> Row:
        return next(r for r in rows if r.target == target and r.method.startswith(method))

    lines = ["| goal | target | measured | met |", "|---|---|---|---|"]
    for name in ("rf-synthetic", "rf-breast-cancer"):
        strong = find(name, "LiRA").metrics
        art = find(name, "ART").metrics
        for k in (4, 8):
            ours = find(name, f"MLA302 k={k}").metrics
            mine, theirs = _rate(ours, 0.01), _rate(strong, 0.01)
            if mine is None or theirs is None:
                lines.append(f"| MLA302 k={k} TPR@1% >= 75% of LiRA-64's | {name} | not "
                             "evaluable (needs >= 1000 holdout rows) | n/a |")
            else:
                share = mine / theirs if theirs else float("inf")
                lines.append(f"| MLA302 k={k} TPR@1% >= 75% of LiRA-64's | {name} | "
                             f"{mine:.1%} vs {theirs:.1%} ({share:.0%}) | "
                             f"{'yes' if share >= 0.75 else 'NO'} |")
            gap = ours["auc"]["estimate"] - strong["auc"]["estimate"]
            lines.append(f"| MLA302 k={k} AUC within 0.03 of LiRA-64's (or above) | {name} | "
                         f"{ours['auc']['estimate']:.3f} vs {strong['auc']['estimate']:.3f} "
                         f"({gap:+.3f}) | {'yes' if gap >= -0.03 else 'NO'} |")
        ours8, art_rate = _rate(find(name, "MLA302 k=8").metrics, 0.01), _rate(art, 0.01)
        if ours8 is not None and art_rate is not None:
            ratio = f"{ours8 / art_rate:.1f}x" if art_rate else "ART finds 0"
            lines.append(f"| MLA302 k=8 TPR@1% >= 5x ART's | {name} | {ours8:.1%} vs "
                         f"{art_rate:.1%} ({ratio}) | "
                         f"{'yes' if ours8 >= 5 * art_rate and ours8 > 0 else 'NO'} |")
        else:
            lines.append(f"| MLA302 k=8 TPR@1% >= 5x ART's | {name} | not evaluable (needs >= "
                         "1000 holdout rows) | n/a |")
    for name, values in aucs.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        lines.append(f"| MLA302 k=8 AUC std over {len(values)} seeds <= 0.01 | {name} | "
                     f"{spread:.4f} ({', '.join(f'{v:.3f}' for v in values)}) | "
                     f"{'yes' if spread <= 0.01 else 'NO'} |")
    control = [r for r in rows if r.target == "lr-control" and r.method.startswith("MLA30")]
    worst = max(abs(r.metrics["auc"]["estimate"] - 0.5) for r in control)
    any_high = any(r.high for r in control)
    lines.append(f"| control near AUC 0.5, no high finding | lr-control | max abs(AUC - 0.5) "
                 f"{worst:.3f}; high findings: {'yes' if any_high else 'none'} | "
                 f"{'yes' if worst <= 0.03 and not any_high else 'NO'} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, default=5, help="seeds for the AUC's stability")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    rows: list[Row] = []
    aucs: dict[str, list[float]] = {}
    measured_targets = targets()
    with tempfile.TemporaryDirectory(prefix="mlaudit-bench-mia-") as tmp:
        for target in measured_targets:
            measured, spread = measure(target, Path(tmp), args.seeds, log)
            rows += measured
            aucs[target.name] = spread
    print("#### Membership inference: mlaudit MLA301/MLA302 vs ART and a 64-reference LiRA\n")
    print(f"- date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")
    print(f"- machine: {platform.machine()}, {joblib.cpu_count()} CPUs, {platform.system()} "
          f"{platform.release()}, Python {platform.python_version()}")
    print(f"- mlaudit {mlaudit.__version__}, scikit-learn {sklearn.__version__}, numpy "
          f"{np.__version__}, ART {importlib.metadata.version('adversarial-robustness-toolbox')}")
    print("- every target: half of the rows are members (train), half non-members (holdout); "
          "balanced evaluation, seed 0; intervals 95% (stratified bootstrap, 1000 resamples; "
          "Clopper-Pearson added for TPR)")
    print("- wall s: the rule's own time (MLA302 includes fitting its reference models, "
          "2 joblib workers); ART: querying, its two cross-fitted attack models and the "
          "statistics\n")
    print("\n".join(table(rows)))
    print("\nTargets:")
    for target in measured_targets:
        print(f"- `{target.name}`: {target.description}")
    print("\n##### Goals\n")
    print("\n".join(goals(rows, aucs)))
    print(f"\nTotal benchmark wall time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
