"""Build the mlaudit demo: a synthetic "loan applications" dataset and four model artifacts.

Everything is generated offline with fixed seeds, so two runs write byte-identical CSVs
(the model files are deterministic in content too, but are not promised byte-for-byte).

    python examples/make_demo.py --out demo

Writes into the output directory:

* ``train.csv`` / ``holdout.csv`` -- a 60/40 stratified split of ~3,000 applications. Besides
  the numeric features and the ``approved`` label they hold personal data generated with Faker
  (``full_name``, ``email``, ``phone`` and a free-text ``notes`` column that sometimes repeats a
  name, phone number or e-mail address), so privacy/PII checks have something to find.
* ``model-overfit.joblib`` -- a fully grown RandomForestClassifier (train accuracy 1.0).
* ``model-regularised.skops`` -- StandardScaler + LogisticRegression(C=0.1), saved with skops.
* ``model-regularised.onnx`` -- the same pipeline converted with skl2onnx, one ONNX input per
  numeric feature (named after the column) and probabilities as a plain float tensor.
* ``model-hostile.pkl`` -- a pickle whose ``__reduce__`` runs ``touch <out>/PWNED`` when loaded.
  It is written with ``pickle.dumps`` and never loaded here; a scanner must block it unloaded.
* ``current.csv`` -- "production" data for the drift rule (MLA704): the holdout with incomes
  raised and credit scores lowered, as after a change in who applies.
* ``train-leaky.csv`` / ``holdout-leaky.csv`` / ``model-leaky.skops`` -- the leakage rule's case
  (MLA703): the regularised pipeline retrained with a column that is the label plus noise.

Models are trained on the numeric features only, from pandas DataFrames, so every fitted
estimator carries ``feature_names_in_``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SEED = 0
N_ROWS = 3000
HOLDOUT_FRACTION = 0.4
TARGET = "approved"
INT_FEATURES = [
    "age",
    "income",
    "loan_amount",
    "loan_term_months",
    "credit_score",
    "years_employed",
    "num_open_accounts",
]
FEATURES = [
    "age",
    "income",
    "loan_amount",
    "loan_term_months",
    "credit_score",
    "debt_to_income",
    "years_employed",
    "num_open_accounts",
]
PERSONAL = ["full_name", "email", "phone", "notes"]
ONNX_OPSET = {"": 17, "ai.onnx.ml": 3}


# --------------------------------------------------------------------------- dataset


def _zscore(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / values.std()


def make_features(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Numeric application features with plausible ranges and correlations."""
    age = rng.integers(21, 71, size=n)
    # Income grows with age until the late 40s; log-normal spread around that.
    peak = 1.0 - ((age - 48) / 40.0) ** 2
    income = np.exp(rng.normal(10.55 + 0.45 * peak, 0.45, size=n))
    income = np.clip(np.round(income, -2), 12_000, 450_000).astype(np.int64)
    terms, weights = [12, 24, 36, 48, 60, 72], [0.08, 0.14, 0.3, 0.16, 0.24, 0.08]
    loan_term_months = rng.choice(terms, size=n, p=weights)
    loan_amount = income * rng.uniform(0.05, 0.9, size=n) * (0.6 + loan_term_months / 72.0)
    loan_amount = np.clip(np.round(loan_amount, -2), 1_000, 250_000).astype(np.int64)
    credit_score = np.clip(np.round(rng.normal(680, 65, size=n)), 300, 850).astype(np.int64)
    # Lower credit scores tend to come with more debt.
    dti = rng.beta(2.2, 5.5, size=n) * 0.8 - (credit_score - 680) / 2_000.0
    debt_to_income = np.round(np.clip(dti, 0.01, 0.75), 3)
    max_years = age - 18
    years_employed = np.minimum(rng.poisson(0.25 * max_years + 1), max_years).astype(np.int64)
    num_open_accounts = rng.poisson(4.0, size=n).astype(np.int64)
    return pd.DataFrame(
        {
            "age": age.astype(np.int64),
            "income": income,
            "loan_amount": loan_amount,
            "loan_term_months": loan_term_months.astype(np.int64),
            "credit_score": credit_score,
            "debt_to_income": debt_to_income.astype(np.float64),
            "years_employed": years_employed,
            "num_open_accounts": num_open_accounts,
        }
    )


def make_label(rng: np.random.Generator, x: pd.DataFrame) -> np.ndarray:
    """``approved`` from a mostly linear credit score plus logistic noise (~80% learnable)."""
    score = (
        1.0 * _zscore(x["credit_score"].to_numpy(float))
        - 0.9 * _zscore(x["debt_to_income"].to_numpy(float))
        + 0.5 * _zscore(np.log(x["income"].to_numpy(float)))
        - 0.7 * _zscore((x["loan_amount"] / x["income"]).to_numpy(float))
        + 0.3 * _zscore(x["years_employed"].to_numpy(float))
        - 0.2 * _zscore(x["num_open_accounts"].to_numpy(float))
        - 0.15 * _zscore(x["loan_term_months"].to_numpy(float))
        + 0.2
    )
    noise = rng.logistic(0.0, 1.0, size=len(x))
    return (1.6 * score + noise > 0).astype(np.int64)


_NOTE_TEMPLATES = [
    "Applicant asked to be called back at {phone}.",
    "Co-signer {other_name} will provide the pay stubs.",
    "Send the signed agreement to {email}.",
    "Spoke with {name}; income verified from tax returns.",
    "Reference: {other_name}, reachable on {other_phone}.",
    "Prefers e-mail ({email}) over phone.",
    "Self-employed; two years of statements on file.",
    "Existing customer, no missed payments.",
    "Requested a shorter term after the first quote.",
    "Address changed recently; proof of residence pending.",
    "Loan is for a used car purchase.",
    "Debt consolidation of two credit cards.",
]


def make_personal(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Faker-generated personal columns (seeded; locale en_US)."""
    from faker import Faker

    fake = Faker("en_US")
    Faker.seed(SEED)
    names, emails, phones, notes = [], [], [], []
    for _ in range(n):
        first, last = fake.first_name(), fake.last_name()
        name = f"{first} {last}"
        email = f"{first}.{last}@{fake.free_email_domain()}".lower()
        phone = fake.phone_number()
        names.append(name)
        emails.append(email)
        phones.append(phone)
        if rng.random() < 0.25:
            notes.append("")
            continue
        template = _NOTE_TEMPLATES[int(rng.integers(len(_NOTE_TEMPLATES)))]
        fields = {"name": name, "email": email, "phone": phone}
        if "{other_" in template:
            fields |= {"other_name": fake.name(), "other_phone": fake.phone_number()}
        notes.append(template.format(**fields))
    return pd.DataFrame({"full_name": names, "email": emails, "phone": phones, "notes": notes})


def make_dataset() -> pd.DataFrame:
    rng = np.random.default_rng(SEED)
    features = make_features(rng, N_ROWS)
    label = make_label(rng, features)
    personal = make_personal(rng, N_ROWS)
    data = pd.concat([personal[["full_name", "email", "phone"]], features], axis=1)
    data[TARGET] = label
    data["notes"] = personal["notes"]
    data.insert(0, "application_id", [f"APP-{i:05d}" for i in range(1, N_ROWS + 1)])
    return data


def split(data: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    train, holdout = train_test_split(
        data, test_size=HOLDOUT_FRACTION, random_state=SEED, stratify=data[TARGET]
    )
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    # Fixed line terminator and float format so the bytes don't depend on the platform.
    frame.to_csv(path, index=False, lineterminator="\n", float_format="%.3f")


# --------------------------------------------------------------------------- models


def fit_overfit(x: pd.DataFrame, y: pd.Series) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(
        n_estimators=200, max_depth=None, min_samples_leaf=1, random_state=SEED
    )
    return model.fit(x, y)


def fit_regularised(x: pd.DataFrame, y: pd.Series) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    pipeline = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=0.1))])
    return pipeline.fit(x, y)


def onnx_feeds(x: pd.DataFrame) -> dict[str, np.ndarray]:
    """One float32 column vector per feature -- the input layout of the ONNX model."""
    return {col: x[[col]].to_numpy(dtype=np.float32) for col in FEATURES}


def to_onnx(pipeline: Any, sample: pd.DataFrame) -> bytes:
    """Convert with one ``[None, 1]`` float input per named column and check it matches.

    skl2onnx handles several inputs for a plain Pipeline by inserting a ``FeatureVectorizer``
    (ai.onnx.ml) node that concatenates them in ``initial_types`` order, so the column order
    must be the order the pipeline was fitted on (``feature_names_in_``).
    """
    import onnxruntime as ort
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    assert list(pipeline.feature_names_in_) == FEATURES
    initial_types = [(col, FloatTensorType([None, 1])) for col in FEATURES]
    onx = convert_sklearn(
        pipeline,
        name="loan_approval_regularised",
        initial_types=initial_types,
        options={id(pipeline): {"zipmap": False}},
        target_opset=ONNX_OPSET,
    )
    blob: bytes = onx.SerializeToString()

    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    input_names = [i.name for i in session.get_inputs()]
    if input_names != FEATURES:
        raise RuntimeError(f"ONNX inputs {input_names} != features {FEATURES}")
    labels, probabilities = session.run(None, onnx_feeds(sample))
    expected = pipeline.predict_proba(sample)
    if not np.array_equal(labels.ravel(), pipeline.predict(sample)):
        raise RuntimeError("ONNX labels differ from the scikit-learn pipeline")
    if not np.allclose(probabilities, expected, atol=1e-4):
        diff = float(np.abs(probabilities - expected).max())
        raise RuntimeError(f"ONNX probabilities differ from scikit-learn (max |diff| {diff:g})")
    return blob


class _Pwn:
    """Pickles to ``os.system("touch <path>")``. Only ever dumped, never loaded."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


def hostile_pickle(marker: Path) -> bytes:
    return pickle.dumps(_Pwn(f"touch {shlex.quote(str(marker))}"), protocol=4)


# --------------------------------------------------------------------------- main


def accuracy(model: Any, x: pd.DataFrame, y: pd.Series) -> float:
    return float((model.predict(x) == y.to_numpy()).mean())


def build(out: Path) -> list[tuple[str, str]]:
    import joblib
    import skops.io

    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    marker = out / "PWNED"
    marker.unlink(missing_ok=True)  # a stale marker would make the demo's check meaningless

    data = make_dataset()
    train, holdout = split(data)
    write_csv(train, out / "train.csv")
    write_csv(holdout, out / "holdout.csv")
    x_train, y_train = train[FEATURES], train[TARGET]
    x_hold, y_hold = holdout[FEATURES], holdout[TARGET]

    written: list[tuple[str, str]] = [
        ("train.csv", f"{len(train)} rows x {train.shape[1]} columns"),
        ("holdout.csv", f"{len(holdout)} rows x {holdout.shape[1]} columns"),
    ]

    overfit = fit_overfit(x_train, y_train)
    joblib.dump(overfit, out / "model-overfit.joblib")
    written.append(
        (
            "model-overfit.joblib",
            f"RandomForest, accuracy train {accuracy(overfit, x_train, y_train):.3f}"
            f" / holdout {accuracy(overfit, x_hold, y_hold):.3f}",
        )
    )

    regularised = fit_regularised(x_train, y_train)
    skops.io.dump(regularised, out / "model-regularised.skops")
    written.append(
        (
            "model-regularised.skops",
            f"StandardScaler+LogisticRegression(C=0.1), accuracy train "
            f"{accuracy(regularised, x_train, y_train):.3f}"
            f" / holdout {accuracy(regularised, x_hold, y_hold):.3f}",
        )
    )

    (out / "model-regularised.onnx").write_bytes(to_onnx(regularised, x_hold))
    written.append(
        (
            "model-regularised.onnx",
            f"same pipeline, {len(FEATURES)} inputs (one per column), opset {ONNX_OPSET['']};"
            f" matches scikit-learn on {len(x_hold)} holdout rows",
        )
    )

    (out / "model-hostile.pkl").write_bytes(hostile_pickle(marker))
    written.append(("model-hostile.pkl", f"runs `touch {marker}` if loaded -- never load it"))

    write_csv(drifted(holdout), out / "current.csv")
    written.append(("current.csv", "the holdout after a shift: incomes x1.4, credit scores -60"))
    return written + build_leaky(out)


def drifted(holdout: pd.DataFrame) -> pd.DataFrame:
    """The holdout as production might see it a year on: higher incomes (and loans), lower
    credit scores, the rest unchanged."""
    current = holdout.copy()
    current["income"] = np.round(current["income"] * 1.4, -2).astype(np.int64)
    current["loan_amount"] = np.round(current["loan_amount"] * 1.3, -2).astype(np.int64)
    current["credit_score"] = np.clip(current["credit_score"] - 60, 300, 850).astype(np.int64)
    return current


LEAKY_COLUMN = "underwriter_score"


def build_leaky(out: Path) -> list[tuple[str, str]]:
    """The leaky variant for MLA703: the demo's split with one more column,
    ``underwriter_score``, the label plus a little noise (a score only known once the decision
    is made), and the regularised pipeline retrained with it. Its holdout accuracy is perfect,
    and means nothing."""
    import skops.io

    out.mkdir(parents=True, exist_ok=True)
    train, holdout = split(make_dataset())
    rng = np.random.default_rng(SEED + 1)
    for frame in (train, holdout):
        frame[LEAKY_COLUMN] = np.round(frame[TARGET] + rng.normal(0.0, 0.05, len(frame)), 3)
    write_csv(train, out / "train-leaky.csv")
    write_csv(holdout, out / "holdout-leaky.csv")
    columns = [*FEATURES, LEAKY_COLUMN]
    leaky = fit_regularised(train[columns], train[TARGET])
    skops.io.dump(leaky, out / "model-leaky.skops")
    return [
        ("train-leaky.csv / holdout-leaky.csv", f"the demo split plus {LEAKY_COLUMN}"
         " (the label plus noise)"),
        ("model-leaky.skops", "StandardScaler+LogisticRegression(C=0.1) with the leaky column,"
         f" holdout accuracy {accuracy(leaky, holdout[columns], holdout[TARGET]):.3f}"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("demo"), help="output directory")
    args = parser.parse_args(argv)

    written = build(args.out)
    print(f"demo written to {args.out}/")
    width = max(len(name) for name, _ in written)
    for name, what in written:
        print(f"  {name:<{width}}  {what}")
    print(f"  features: {', '.join(FEATURES)}; target: {TARGET}")
    print(f"  personal columns (in the CSVs, not used by the models): {', '.join(PERSONAL)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
