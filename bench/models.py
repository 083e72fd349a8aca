"""Scan time of each kind of model mlaudit audits, against a scikit-learn RandomForest.

Run from the repository root::

    .venv/bin/python bench/models.py [--rows 400] [--runs 3] [--profile standard] [--kinds ...]

Every model is built here, offline, on data of the same size (``--rows`` rows, half train and
half holdout): tabular rows for the RandomForest baseline, XGBoost, LightGBM and CatBoost in
their own formats and a PyTorch state dict (with its ``--model-class``); short texts for a
TF-IDF pipeline and a tiny Hugging Face BERT folder. Each is scanned ``--runs`` times with
``mlaudit scan --profile standard`` through the CLI in a fresh process, the kinds interleaved
so machine noise hits all alike; the table gives the median wall time and its ratio to the
RandomForest's (the issue's goal: the Hugging Face model within 2x). A kind whose library is
missing, that mlaudit does not load yet ("not supported") or whose scan fails is reported as
such instead of timed.

The environment passes through to mlaudit's model worker: ``OMP_NUM_THREADS=1`` runs torch on
one thread, which is faster for models this small on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
MLAUDIT = Path(sys.executable).with_name("mlaudit")
TARGET = "label"
TEXT = "text"
NETS_MODULE = "bench_models_nets"
_NETS_SOURCE = '''
import torch


class Mlp(torch.nn.Module):
    def __init__(self, n_in=8, width=32, n_out=2):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(n_in, width), torch.nn.ReLU(), torch.nn.Linear(width, n_out)
        )

    def forward(self, x):
        return self.body(x)
'''
_POSITIVE = ("good", "great", "fine", "happy", "love", "nice")
_NEGATIVE = ("bad", "awful", "sad", "hate", "poor", "ugly")
_FILLER = ("the", "movie", "was", "very", "a", "film", "plot", "really", "actor", "and")
_CLASSES = ("neg", "pos")


@dataclass(frozen=True)
class Case:
    """One model to scan: its path and the CLI arguments beyond the data."""

    model: Path
    data: tuple[Path, Path]
    arguments: tuple[str, ...] = ()


@dataclass
class Outcome:
    kind: str
    times: list[float] = field(default_factory=list)
    note: str = ""
    framework: str | None = None
    ran: int = 0
    skipped: int = 0


# --------------------------------------------------------------------------- data


def tabular(root: Path, rows: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(rows, 8))
    score = features[:, 0] + 0.5 * features[:, 1] - 0.3 * features[:, 2]
    labels = (score + 0.5 * rng.normal(size=rows) > 0).astype(int)
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(8)]).assign(**{TARGET: labels})
    return _split(root / "tabular", frame)


def texts(root: Path, rows: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, rows)
    reviews = []
    for label in labels:
        words = [*rng.choice(_FILLER, 3), *rng.choice(_POSITIVE if label else _NEGATIVE, 3)]
        rng.shuffle(words)
        reviews.append(" ".join(words))
    frame = pd.DataFrame({TEXT: reviews, TARGET: [_CLASSES[i] for i in labels]})
    return _split(root / "text", frame)


def _split(folder: Path, frame: pd.DataFrame) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    half = len(frame) // 2
    frame.iloc[:half].to_csv(folder / "train.csv", index=False)
    frame.iloc[half:].to_csv(folder / "holdout.csv", index=False)
    return folder / "train.csv", folder / "holdout.csv"


def _train(data: tuple[Path, Path]) -> tuple[pd.DataFrame, pd.Series]:
    train = pd.read_csv(data[0])
    return train.drop(columns=[TARGET]), train[TARGET]


# --------------------------------------------------------------------------- models
# Each builder returns the case, or raises ImportError when its library is not installed.


def random_forest(root: Path, data: tuple[Path, Path]) -> Case:
    import joblib
    from sklearn.ensemble import RandomForestClassifier

    x, y = _train(data)
    joblib.dump(RandomForestClassifier(n_estimators=100, random_state=0).fit(x, y),
                root / "rf.joblib")
    return Case(root / "rf.joblib", data)


def xgboost_native(root: Path, data: tuple[Path, Path]) -> Case:
    import xgboost

    x, y = _train(data)
    xgboost.XGBClassifier(n_estimators=100, max_depth=4, n_jobs=1).fit(x, y).save_model(
        root / "xgb.json"
    )
    return Case(root / "xgb.json", data)


def lightgbm_native(root: Path, data: tuple[Path, Path]) -> Case:
    import lightgbm

    x, y = _train(data)
    model = lightgbm.LGBMClassifier(n_estimators=100, num_leaves=15, verbose=-1, n_jobs=1)
    model.fit(x, y).booster_.save_model(root / "lgbm.txt")
    return Case(root / "lgbm.txt", data)


def catboost_native(root: Path, data: tuple[Path, Path]) -> Case:
    import catboost

    x, y = _train(data)
    model = catboost.CatBoostClassifier(iterations=100, depth=4, verbose=0, thread_count=1,
                                        train_dir=str(root / "catboost_info"))
    model.fit(x, y).save_model(str(root / "cat.cbm"))
    return Case(root / "cat.cbm", data)


def torch_state_dict(root: Path, data: tuple[Path, Path]) -> Case:
    import torch

    (root / f"{NETS_MODULE}.py").write_text(_NETS_SOURCE)
    sys.path.insert(0, str(root))
    try:
        from bench_models_nets import Mlp  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(root))
    x, y = _train(data)
    torch.manual_seed(0)
    net = Mlp()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    inputs = torch.as_tensor(x.to_numpy(dtype=np.float32))
    labels = torch.as_tensor(y.to_numpy().copy())
    for _ in range(200):
        loss = torch.nn.functional.cross_entropy(net(inputs), labels)
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    torch.save(net.state_dict(), root / "mlp_state.pt")
    return Case(root / "mlp_state.pt", data,
                ("--model-class", f"{NETS_MODULE}:Mlp", "--model-output", "logits"))


def tfidf_pipeline(root: Path, data: tuple[Path, Path]) -> Case:
    import joblib
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    x, y = _train(data)
    pipeline = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000))
    joblib.dump(pipeline.fit(x[TEXT], y), root / "tfidf.joblib")
    return Case(root / "tfidf.joblib", data, ("--text-column", TEXT))


def huggingface_tiny(root: Path, data: tuple[Path, Path]) -> Case:
    """A 2-layer BERT (hidden size 32) fitted for a few full-batch steps, saved as
    transformers saves it (config.json, model.safetensors, tokenizer files)."""
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                  *sorted({*_POSITIVE, *_NEGATIVE, *_FILLER})]
    (root / "vocab.txt").write_text("\n".join(vocabulary) + "\n")
    tokenizer = transformers.BertTokenizerFast(str(root / "vocab.txt"))
    config = transformers.BertConfig(
        vocab_size=len(vocabulary), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, id2label=dict(enumerate(_CLASSES)),
        label2id={c: i for i, c in enumerate(_CLASSES)},
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    x, y = _train(data)
    encoded = tokenizer(x[TEXT].tolist(), padding=True, return_tensors="pt")
    labels = torch.as_tensor([_CLASSES.index(c) for c in y])
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(20):
        model(**encoded, labels=labels).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    folder = root / "tiny-bert"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Case(folder, data, ("--text-column", TEXT))


Builder = Callable[[Path, tuple[Path, Path]], Case]


@dataclass(frozen=True)
class Kind:
    label: str
    build: Builder
    data: str  # "tabular" or "text"


# The first is the baseline.
KINDS: dict[str, Kind] = {
    "rf": Kind("scikit-learn RandomForest (joblib)", random_forest, "tabular"),
    "xgboost": Kind("XGBoost (native JSON)", xgboost_native, "tabular"),
    "lightgbm": Kind("LightGBM (native text)", lightgbm_native, "tabular"),
    "catboost": Kind("CatBoost (native .cbm)", catboost_native, "tabular"),
    "torch": Kind("PyTorch state dict + --model-class", torch_state_dict, "tabular"),
    "tfidf": Kind("TF-IDF + LogisticRegression (text)", tfidf_pipeline, "text"),
    "hf": Kind("Hugging Face tiny BERT (folder)", huggingface_tiny, "text"),
}
BASELINE = next(iter(KINDS))


# --------------------------------------------------------------------------- scanning


def scan(case: Case, profile: str, work: Path, output: Path) -> tuple[float, dict[str, object]]:
    """One ``mlaudit scan`` in a fresh process: its wall time and its JSON report."""
    command = [
        str(MLAUDIT), "scan", str(case.model), "--train", str(case.data[0]),
        "--holdout", str(case.data[1]), "--target", TARGET, "--profile", profile,
        "--format", "json", "-o", str(output), "-q", "--exit-zero", *case.arguments,
    ]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=work, env=environment, capture_output=True, text=True,
                          check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"exit {done.returncode}: {last}")
    report: dict[str, object] = json.loads((output / "report.json").read_text())
    return seconds, report


def _not_loaded_reason(report: dict[str, object]) -> str | None:
    """Why the model's behaviour was not audited, or None if it was loaded."""
    subject = report["subject"]
    assert isinstance(subject, dict)
    if subject["model"].get("framework"):
        return None
    results = report["results"]
    assert isinstance(results, list)
    reasons = [r["reason"] for r in results if r["rule_id"] == "MLA301" and r.get("reason")]
    return reasons[0] if reasons else "the model was not loaded"


def run(kinds: list[str], rows: int, runs: int, profile: str, root: Path) -> list[Outcome]:
    data = {"tabular": tabular(root, rows), "text": texts(root, rows)}
    cases: dict[str, Case] = {}
    outcomes = {kind: Outcome(kind) for kind in kinds}
    for kind in kinds:
        folder = root / kind
        folder.mkdir()
        try:
            cases[kind] = KINDS[kind].build(folder, data[KINDS[kind].data])
        except ImportError as missing:
            outcomes[kind].note = f"not installed ({missing.name})"
        print(f"built {kind}", file=sys.stderr)
    for attempt in range(runs):
        for kind, case in cases.items():
            outcome = outcomes[kind]
            if outcome.note:
                continue
            try:
                seconds, report = scan(case, profile, case.model.parent,
                                       root / f"out-{attempt}-{case.model.stem}")
            except RuntimeError as error:
                outcome.note = f"scan failed ({error})"
                continue
            reason = _not_loaded_reason(report)
            if reason is not None:
                outcome.note = f"not supported (model not loaded: {reason})"
                continue
            outcome.times.append(seconds)
            model = report["subject"]["model"]  # type: ignore[index]
            outcome.framework = str(model["framework"])
            results = report["results"]
            assert isinstance(results, list)
            outcome.ran = sum(r["status"] in ("passed", "failed") for r in results)
            outcome.skipped = sum(r["status"] == "skipped" for r in results)
            print(f"run {attempt + 1}/{runs} {kind}: {seconds:.1f} s", file=sys.stderr)
    return [outcomes[kind] for kind in kinds]


def table(outcomes: list[Outcome], rows: int, runs: int, profile: str) -> str:
    baseline = next((o for o in outcomes if o.kind == BASELINE and o.times), None)
    base = statistics.median(baseline.times) if baseline is not None else None
    lines = [
        f"`mlaudit scan --profile {profile}`, {rows} rows (half train, half holdout), "
        f"median of {runs} runs; ratio = median / {KINDS[BASELINE].label} median",
        "",
        "| model | framework | median (s) | ratio | rules ran / skipped |",
        "|---|---|---|---|---|",
    ]
    for outcome in outcomes:
        if not outcome.times:
            lines.append(f"| {KINDS[outcome.kind].label} | - | {outcome.note or 'no run'} | - "
                         "| - |")
            continue
        median = statistics.median(outcome.times)
        ratio = f"{median / base:.2f}x" if base else "-"
        lines.append(f"| {KINDS[outcome.kind].label} | {outcome.framework} | {median:.1f} | "
                     f"{ratio} | {outcome.ran} / {outcome.skipped} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--kinds", nargs="*", choices=list(KINDS), default=list(KINDS),
                        help="the kinds to scan (default: all; the baseline is always added)")
    args = parser.parse_args()
    kinds = [BASELINE, *[k for k in args.kinds if k != BASELINE]]
    with tempfile.TemporaryDirectory(prefix="mlaudit-bench-models-") as scratch:
        outcomes = run(kinds, args.rows, args.runs, args.profile, Path(scratch))
    print(table(outcomes, args.rows, args.runs, args.profile))


if __name__ == "__main__":
    main()
