"""MLA401 against a naive presidio loop, on a table with planted personal data.

    .venv/bin/python bench/pii.py                  # 100,000 rows; naive loop on 3,000 of them
    .venv/bin/python bench/pii.py --rows 20000 --naive-rows 1000 --jobs 2

One run, Markdown tables on stdout (progress on stderr):

1. **Throughput**: rows/s and MB/s (UTF-8 bytes of the cells covered) of a naive loop that
   calls presidio's ``AnalyzerEngine.analyze`` on every cell, with the same recognizers and
   threshold as mlaudit (the same engine object), against the MLA401 rule run end to end
   (``PersonalDataInData.check``) in its default mode (``sample_rows=2000``) and in exact
   mode (``sample_rows=0``: every row), in one process (``--jobs``, default 1) and, for
   exact mode, also with two worker processes (joblib/loky; their start-up is included).
   The naive loop is too slow for the whole table, so it runs on the first
   ``--naive-rows`` rows; its per-row cost does not depend on the table, and both MLA401
   modes run on those same rows too. Engine start-up (imports, name lists) is excluded for
   both.
2. **Accuracy per entity type**: cell-level precision and recall against the planted labels,
   naive loop vs MLA401 exact mode, on the same rows. MLA401 analyses each distinct value
   once and maps the hits back to every cell holding it; these are the hits its findings
   count.
3. **Shares from the default (sampled) mode on the whole table**: each (column, entity) found,
   its true share of rows, MLA401's estimate and 95 % interval, and whether the interval
   covers the truth.

The table is generated with Faker (seeded) and NumPy: names composed from Faker first-name
and surname pools, e-mail addresses from those names, phone numbers, SSNs, dates of birth,
card numbers and IP addresses from Faker per row, cities from a pool (a column with no
personal data), and two free-text columns of Faker sentences with personal data planted in
a known share of rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlaudit.pii.analysis import AnalysisSettings, TextGroup, analyse_groups
from mlaudit.pii.analyzer import get_engine
from mlaudit.pii.entities import DATE_OF_BIRTH, DATE_TIME, ENTITY_NAMES
from mlaudit.pii.hints import hint_for
from mlaudit.rules.base import RuleContext
from mlaudit.rules.personal_data import PersonalDataInData
from mlaudit.scanners.inventory import ImportInventory
from mlaudit.scanners.sniff import ModelFormat
from mlaudit.subject.build import ModelArtifact, Subject
from mlaudit.subject.data import Dataset

Labels = dict[str, list[frozenset[str]]]
MIN_SCORE = 0.5
NOTES_PLANTED = 0.4
REVIEW_PLANTED = 0.15


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the table


def make_table(rows: int, seed: int) -> tuple[pd.DataFrame, Labels]:
    """The table and, per column, the entity types planted in each row."""
    from faker import Faker

    fake = Faker("en_US")
    Faker.seed(seed)
    rng = np.random.default_rng(seed)
    firsts = np.array([fake.first_name() for _ in range(3000)])
    lasts = np.array([fake.last_name() for _ in range(3000)])
    domains = np.array([fake.free_email_domain() for _ in range(50)] + [
        fake.domain_name() for _ in range(150)])
    cities = np.array([fake.city() for _ in range(2000)])
    sentences = np.array([fake.sentence() for _ in range(5000)])

    def names(n: int) -> np.ndarray:
        return np.char.add(np.char.add(rng.choice(firsts, n), " "), rng.choice(lasts, n))

    def emails(n: int) -> np.ndarray:
        local = np.char.add(np.char.add(np.char.lower(rng.choice(firsts, n)), "."),
                            np.char.lower(rng.choice(lasts, n)))
        local = np.char.add(local, rng.integers(1, 99, n).astype(str))
        return np.char.add(np.char.add(local, "@"), rng.choice(domains, n))

    frame = pd.DataFrame({
        "full_name": names(rows),
        "email": emails(rows),
        "phone": [fake.phone_number() for _ in range(rows)],
        "ssn": [fake.ssn() for _ in range(rows)],
        "date_of_birth": [fake.date_of_birth().isoformat() for _ in range(rows)],
        "credit_card": [fake.credit_card_number() for _ in range(rows)],
        "ip_address": [fake.ipv4_public() for _ in range(rows)],
        "city": rng.choice(cities, rows),
    })
    labels: Labels = {
        "full_name": [frozenset({"PERSON"})] * rows,
        "email": [frozenset({"EMAIL_ADDRESS"})] * rows,
        "phone": [frozenset({"PHONE_NUMBER"})] * rows,
        "ssn": [frozenset({"US_SSN"})] * rows,
        "date_of_birth": [frozenset({DATE_OF_BIRTH})] * rows,
        "credit_card": [frozenset({"CREDIT_CARD"})] * rows,
        "ip_address": [frozenset({"IP_ADDRESS"})] * rows,
        "city": [frozenset()] * rows,
    }
    plants: list[tuple[str, Callable[[], str], frozenset[str]]] = [
        ("Phone {x}, ask for the billing team.", fake.phone_number, frozenset({"PHONE_NUMBER"})),
        ("Contact {x} about the renewal.", lambda: str(names(1)[0]), frozenset({"PERSON"})),
        ("Send the signed copy to {x} today.", lambda: str(emails(1)[0]),
         frozenset({"EMAIL_ADDRESS"})),
        ("Card on file {x} was declined.", fake.credit_card_number,
         frozenset({"CREDIT_CARD"})),
        ("SSN {x} verified by the branch.", fake.ssn, frozenset({"US_SSN"})),
    ]
    review_plants: list[tuple[str, Callable[[], str], frozenset[str]]] = [
        ("Reviewed by {x}.", lambda: str(names(1)[0]), frozenset({"PERSON"})),
        ("Reply to {x} for details.", lambda: str(emails(1)[0]), frozenset({"EMAIL_ADDRESS"})),
        ("Login came from {x}.", fake.ipv4_public, frozenset({"IP_ADDRESS"})),
    ]
    for column, share, pool, length in (
        ("notes", NOTES_PLANTED, plants, 1), ("review", REVIEW_PLANTED, review_plants, 3),
    ):
        texts, truth = [], []
        for _ in range(rows):
            words = " ".join(rng.choice(sentences, length))
            if rng.random() < share:
                template, value, entities = pool[int(rng.integers(len(pool)))]
                words = f"{words} {template.format(x=value())}"
                truth.append(entities)
            else:
                truth.append(frozenset())
            texts.append(words)
        frame[column] = texts
        labels[column] = truth
    return frame, labels


# --------------------------------------------------------------------------- the contenders


def naive(frame: pd.DataFrame) -> tuple[float, Labels]:
    """presidio's analyze on every cell, nothing else: the same engine, all recognizers."""
    analyzer = get_engine().analyzer
    found: Labels = {column: [] for column in frame.columns}
    started = time.perf_counter()
    for column in frame.columns:
        for value in frame[column].tolist():
            results = analyzer.analyze(text=str(value), language="en", score_threshold=MIN_SCORE)
            found[column].append(frozenset(
                DATE_OF_BIRTH if r.entity_type == DATE_TIME else r.entity_type for r in results
            ))
    return time.perf_counter() - started, found


def _settings(jobs: int) -> AnalysisSettings:
    return AnalysisSettings(frozenset(ENTITY_NAMES), MIN_SCORE, 10_000, None, jobs)


def mla401_cells(frame: pd.DataFrame, jobs: int) -> Labels:
    """The hits MLA401 counts, per cell: each distinct value analysed once, mapped back."""
    groups, uniques = [], []
    for column in frame.columns:
        distinct = pd.unique(frame[column].astype(str))
        uniques.append(distinct)
        groups.append(TextGroup(hint_for(column), list(distinct)))
    hits = analyse_groups(groups, _settings(jobs))
    found: Labels = {}
    for column, distinct, column_hits in zip(frame.columns, uniques, hits, strict=True):
        by_value = {v: frozenset(h.entity for h in hs) for v, hs in zip(distinct, column_hits,
                                                                          strict=True)}
        found[column] = [by_value[v] for v in frame[column].astype(str).tolist()]
    return found


@dataclass(frozen=True)
class RuleRun:
    seconds: float
    evidence: list[dict[str, object]]


def mla401_rule(frame: pd.DataFrame, *, sample_rows: int, jobs: int, seed: int) -> RuleRun:
    """The MLA401 rule end to end on one dataset, as the engine would run it."""
    meta = PersonalDataInData.meta
    options = {o.name: o.default for o in meta.options}
    options.update({"sample_rows": sample_rows, "n_jobs": jobs})
    dataset = Dataset("train", Path("bench.csv"), "0" * 64, frame, None)
    model = ModelArtifact("bench", None, ModelFormat.ENTRY_POINT, None, None, ImportInventory())
    subject = Subject(model, (dataset,), None, None, ())
    ctx = RuleContext(meta, subject, None, options, seed, "standard", time.monotonic() + 3600)
    started = time.perf_counter()
    findings = list(PersonalDataInData().check(ctx))
    seconds = time.perf_counter() - started
    return RuleRun(seconds, [dict(f.evidence) for f in findings])


# --------------------------------------------------------------------------- scoring


def _size_mb(frame: pd.DataFrame) -> float:
    return sum(frame[c].astype(str).str.len().sum() for c in frame.columns) / 1e6


def _scores(truth: Labels, found: Labels) -> dict[str, tuple[int, int, int]]:
    """(true positives, false positives, false negatives) per entity type, over cells."""
    counts: dict[str, list[int]] = {e: [0, 0, 0] for e in ENTITY_NAMES}
    for column, expected_cells in truth.items():
        for expected, got in zip(expected_cells, found[column], strict=True):
            for entity in expected | got:
                if entity not in counts:
                    continue
                slot = 0 if entity in expected and entity in got else (1 if entity in got else 2)
                counts[entity][slot] += 1
    return {e: (c[0], c[1], c[2]) for e, c in counts.items() if any(c)}


def _ratio(numerator: int, denominator: int) -> str:
    return f"{numerator / denominator:.3f}" if denominator else "-"


def _accuracy_table(truth: Labels, contenders: Sequence[tuple[str, Labels]]) -> list[str]:
    scored = [(name, _scores(truth, found)) for name, found in contenders]
    entities = sorted({e for _, s in scored for e in s})
    header = "| entity | planted cells |" + "".join(
        f" {name} precision | {name} recall |" for name, _ in scored
    )
    lines = [header, "|---|---|" + "---|---|" * len(scored)]
    for entity in entities:
        tp, _, fn = scored[0][1].get(entity, (0, 0, 0))
        row = f"| {entity} | {tp + fn} |"
        for _, score in scored:
            tp, fp, fn = score.get(entity, (0, 0, 0))
            row += f" {_ratio(tp, tp + fp)} | {_ratio(tp, tp + fn)} |"
        lines.append(row)
    return lines


def _share_table(frame: pd.DataFrame, truth: Labels, run: RuleRun) -> list[str]:
    lines = ["| column | entity | true share | MLA401 estimate | 95 % interval | covered |",
             "|---|---|---|---|---|---|"]
    for evidence in run.evidence:
        column = str(evidence["column"])
        entities = evidence["entities"]
        assert isinstance(entities, list)
        for item in entities:
            entity = item["entity"]
            true_share = sum(entity in cell for cell in truth[column]) / len(frame)
            low, high = item["share_low"], item["share_high"]
            covered = "yes" if low - 1e-9 <= true_share <= high + 1e-9 else "**no**"
            lines.append(f"| {column} | {entity} | {true_share:.4f} | {item['share']:.4f} | "
                         f"{low:.4f} to {high:.4f} | {covered} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--naive-rows", type=int, default=3_000)
    parser.add_argument("--jobs", type=int, default=1, help="MLA401 n_jobs (0: auto)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    _log(f"generating {args.rows} rows")
    frame, truth = make_table(args.rows, args.seed)
    head = frame.iloc[: args.naive_rows].reset_index(drop=True)
    head_truth = {c: cells[: args.naive_rows] for c, cells in truth.items()}
    started = time.perf_counter()
    get_engine()
    engine_seconds = time.perf_counter() - started
    _log(f"naive loop on {len(head)} rows")
    naive_seconds, naive_found = naive(head)
    _log("MLA401 on the same rows (exact, then default) and on the whole table")
    exact_head = mla401_rule(head, sample_rows=0, jobs=args.jobs, seed=args.seed)
    exact_processes = mla401_rule(head, sample_rows=0, jobs=2, seed=args.seed)
    default_head = mla401_rule(head, sample_rows=2000, jobs=args.jobs, seed=args.seed)
    default_full = mla401_rule(frame, sample_rows=2000, jobs=args.jobs, seed=args.seed)
    exact_found = mla401_cells(head, args.jobs)

    head_mb, full_mb = _size_mb(head), _size_mb(frame)
    rows = [
        ("naive presidio loop", len(head), head_mb, naive_seconds),
        ("MLA401 exact (every row)", len(head), head_mb, exact_head.seconds),
        ("MLA401 exact (every row), 2 worker processes", len(head), head_mb,
         exact_processes.seconds),
        ("MLA401 default (2,000-row sample per column)", len(head), head_mb,
         default_head.seconds),
        ("MLA401 default (2,000-row sample per column)", len(frame), full_mb,
         default_full.seconds),
    ]
    naive_rate = len(head) / naive_seconds
    out = [
        f"## PII bench: {args.rows:,} rows x {frame.shape[1]} columns ({full_mb:.1f} MB), "
        f"seed {args.seed}",
        "",
        f"Engine: {get_engine().description}; built in {engine_seconds:.1f} s (excluded). "
        f"Machine: {sys.platform}, {__import__('os').cpu_count()} cores.",
        "",
        "### 1. Throughput",
        "",
        "| contender | rows | MB | seconds | rows/s | MB/s | x naive |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, count, megabytes, seconds in rows:
        out.append(f"| {name} | {count:,} | {megabytes:.2f} | {seconds:.1f} | "
                   f"{count / seconds:,.0f} | {megabytes / seconds:.3f} | "
                   f"{count / seconds / naive_rate:.1f} |")
    out += ["", f"### 2. Cell-level precision and recall on the first {len(head):,} rows", ""]
    out += _accuracy_table(head_truth, [("naive", naive_found), ("MLA401", exact_found)])
    out += ["", f"### 3. Shares estimated by MLA401's default mode on all {len(frame):,} rows",
            ""]
    out += _share_table(frame, truth, default_full)
    out += ["", f"Total benchmark wall time: {time.perf_counter() - began:.0f} s"]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
