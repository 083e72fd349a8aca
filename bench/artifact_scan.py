"""Benchmark mlaudit on every model format it scans, against the same peers as pickle_scan.py.

Run from the repository root::

    .venv/bin/python bench/artifact_scan.py [--runs 3] [--keep] [--no-joblib]

It measures, in one run, and prints Markdown tables to stdout (progress goes to stderr):

1. Detection on the whole hostile corpus (``tests/fixtures/hostile_pickles.py``,
   ``hostile_archives.py``, ``hostile_formats.py``): pickles, PyTorch zip/legacy, TorchScript,
   npy/npz, compressed joblib, zip/tar tricks, Keras, ONNX, safetensors. Nothing is ever
   loaded; the script asserts at the end that the canary does not exist.
2. False positives of HIGH or worse on the benign corpus (``benign_archives.py``,
   ``benign_formats.py`` and pickle_scan.py's scikit-learn set). For mlaudit, every inventory
   item of HIGH or worse is listed: issues with severity >= HIGH, DANGEROUS and UNLISTED
   imports, and scan problems.
3. A large benign file (>= 1 GiB), generated into a cache dir: a PyTorch state dict (zip) and
   a joblib dict of numpy arrays. Per tool: median wall seconds, MB/s and peak memory of the
   forked child that scans it, with peer/mlaudit ratios.

Every scan runs in a forked child with a timeout (``pickle_scan.run_isolated``); the adapters
for mlaudit and the peers are pickle_scan.py's own.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.pickle_scan import (  # noqa: E402
    CLEAN,
    CRASH,
    FLAGGED,
    REFUSED,
    SKIPPED,
    STOPS_USER,
    TIMEOUT,
    Outcome,
    Tool,
    _progress,
    _table,
    build_benign_set,
    discover_tools,
    run_isolated,
    scan_each,
)
from mlaudit.core.errors import InputError  # noqa: E402
from mlaudit.core.findings import Severity  # noqa: E402
from mlaudit.loaders.load_gate import decide  # noqa: E402
from mlaudit.scanners.pickle_policy import Verdict  # noqa: E402
from mlaudit.subject.build import open_model  # noqa: E402
from tests.fixtures.benign_archives import build_benign_archives  # noqa: E402
from tests.fixtures.benign_formats import build_benign_formats  # noqa: E402
from tests.fixtures.hostile_archives import build_hostile_archives  # noqa: E402
from tests.fixtures.hostile_formats import build_hostile_formats  # noqa: E402
from tests.fixtures.hostile_pickles import build_hostile_corpus  # noqa: E402

GIB = 1024**3
FAMILIES = ("pickle", "torch", "numpy", "joblib-compressed", "archive", "keras", "onnx",
            "safetensors")
_SCANNER_FAMILY = {
    "torch_zip": "torch", "torch_legacy": "torch", "npy": "numpy", "npz": "numpy",
    "compressed": "joblib-compressed", "zip": "archive", "tar": "archive", "7z": "archive",
    "keras_zip": "keras", "keras_h5": "keras", "onnx": "onnx", "safetensors": "safetensors",
}


@dataclass(frozen=True)
class Sample:
    name: str
    family: str
    path: Path


def _family(sample: Any) -> str:
    scanner = getattr(sample, "scanner", None)
    return _SCANNER_FAMILY[scanner] if scanner else "pickle"  # hostile_pickles: no scanner


# --------------------------------------------------------------------------------------------
# mlaudit's HIGH-or-worse inventory items (false-positive table).


def _mlaudit_high(path: Path) -> Outcome:
    try:
        artifact = open_model(str(path))
    except InputError as error:
        return Outcome(REFUSED, f"InputError: {str(error).replace(str(path), path.name)}")
    inventory = artifact.inventory
    items = [f"issue {i.rule_id} {i.severity.value}: {i.key}"
             for i in inventory.issues if i.severity >= Severity.HIGH]
    items += [f"DANGEROUS import {n.module}.{n.name}"
              for n in inventory.with_verdict(Verdict.DANGEROUS)]
    items += [f"UNLISTED import {n.module}.{n.name}" + (f" in {n.member}" if n.member else "")
              for n in inventory.with_verdict(Verdict.UNLISTED)]
    items += [f"problem {p.problem.kind}" + (f" in {p.member}" if p.member else "")
              for p in inventory.problems]
    gate = decide(artifact, [], trust_model=False).status.name
    if items:
        return Outcome(FLAGGED, f"gate {gate}; " + "; ".join(items))
    return Outcome(CLEAN, f"gate {gate}")


def _mlaudit_open(path: Path) -> Outcome:
    """The timed work for the large file: ``open_model`` (hash + sniff + scan)."""
    artifact = open_model(str(path))
    bad = artifact.inventory.with_verdict(Verdict.DANGEROUS) or artifact.inventory.problems
    return Outcome(FLAGGED if bad else CLEAN, artifact.inventory.format_detail)


# --------------------------------------------------------------------------------------------
# Peak memory: measured inside the forked child that runs the scan.


@dataclass(frozen=True)
class MeasuredOutcome(Outcome):
    start_rss_kb: int = 0
    hwm_kb: int = 0  # VmHWM: includes file pages a scanner mmaps
    peak_anon_kb: int = 0  # RssAnon, sampled every 10 ms


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def measured(check: Callable[[Path], Outcome]) -> Callable[[Path], Outcome]:
    def run(path: Path) -> Outcome:
        with contextlib.suppress(OSError):  # reset VmHWM to the current RSS (Linux >= 4.0)
            Path("/proc/self/clear_refs").write_text("5")
        start_rss, start_anon = _status_kb("VmRSS"), _status_kb("RssAnon")
        peak_anon = [start_anon]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.01):
                peak_anon[0] = max(peak_anon[0], _status_kb("RssAnon"))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            outcome = check(path)
        finally:
            done.set()
            sampler.join()
        return MeasuredOutcome(outcome.kind, outcome.detail, start_rss,
                               _status_kb("VmHWM") - start_rss,
                               max(peak_anon[0], _status_kb("RssAnon")) - start_anon)

    return run


# --------------------------------------------------------------------------------------------
# Large benign files, generated in a spawned child so this process stays small.


def _write_torch(path: Path, total: int) -> None:
    import torch

    chunk = 64 * 1024**2  # 64 MiB per tensor
    state = {f"layer{i}.weight": torch.full((chunk // 4,), float(i) + 0.5)
             for i in range(-(-total // chunk))}
    state["layer0.bias"] = torch.zeros(1024)
    torch.save(state, path)


def _write_joblib(path: Path, total: int) -> None:
    import joblib
    import numpy as np

    chunk = 64 * 1024**2
    arrays = {f"array{i}": np.full(chunk // 4, i + 0.5, dtype=np.float32)
              for i in range(-(-total // chunk))}
    arrays["labels"] = np.arange(1000, dtype=np.int64)
    joblib.dump(arrays, path)


def build_large(cache: Path, name: str, write: Callable[[Path, int], None]) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / name
    if path.exists() and path.stat().st_size >= GIB:
        _progress(f"using cached {path}")
        return path
    _progress(f"writing {path} ...")
    start = time.perf_counter()
    partial = path.with_name(path.name + ".part")
    # A fresh interpreter: torch hangs in a child forked after this process used its threads.
    process = mp.get_context("spawn").Process(target=write, args=(partial, GIB))
    process.start()
    process.join()
    assert process.exitcode == 0, f"writing {name} failed"
    partial.replace(path)
    _progress(f"  {path.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - start:.1f} s")
    return path


# --------------------------------------------------------------------------------------------
# Cells and tables.


def _hostile_cell(tool: Tool, outcome: Outcome) -> str:
    if outcome.kind == REFUSED and tool.name == "mlaudit":
        return "refused (error)"
    return {
        FLAGGED: "detected", REFUSED: "detected (error)", CRASH: "detected (crash)",
        TIMEOUT: "timeout", CLEAN: "**MISSED**", SKIPPED: "**MISSED** (skipped)",
    }[outcome.kind]


def _benign_cell(outcome: Outcome) -> str:
    return {
        FLAGGED: "**HIGH+**", REFUSED: "**REFUSED** (error)", CRASH: "**CRASH**",
        TIMEOUT: "**TIMEOUT**", CLEAN: "ok", SKIPPED: "skipped",
    }[outcome.kind]


def print_detection(tools: list[Tool], samples: list[Sample],
                    results: dict[str, list[Outcome]]) -> None:
    print(f"## 1. Detection: the whole hostile corpus ({len(samples)} live samples)\n")
    print("Goal: **100 % detection**. `detected` = reported dangerous content; `detected "
          "(error)` = a peer stopped with an error a user would see; `refused (error)` = "
          "mlaudit raised `InputError` (the file is refused, never loaded); `**MISSED**` = "
          "reported clean.\n")
    rows = [[f"`{s.name}`", s.family, *[_hostile_cell(t, results[t.name][i]) for t in tools]]
            for i, s in enumerate(samples)]
    summary = ["**detected / total**", ""]
    for tool in tools:
        caught = sum(o.kind in STOPS_USER for o in results[tool.name])
        summary.append(f"**{caught} / {len(samples)}**")
    print(_table(["sample", "family", *[t.name for t in tools]], [*rows, summary]))
    print()
    print("### Per format family (detected / total; mlaudit: of which refused with an error)\n")
    fam_rows = []
    for family in FAMILIES:
        index = [i for i, s in enumerate(samples) if s.family == family]
        if not index:
            continue
        row = [family, str(len(index))]
        for tool in tools:
            outcomes = [results[tool.name][i] for i in index]
            caught = sum(o.kind in STOPS_USER for o in outcomes)
            cell = f"{caught} / {len(index)}"
            if tool.name == "mlaudit":
                cell += f" ({sum(o.kind == REFUSED for o in outcomes)} refused)"
            row.append(cell if caught == len(index) else f"**{cell}**")
        fam_rows.append(row)
    total = ["**all**", str(len(samples))]
    for tool in tools:
        caught = sum(o.kind in STOPS_USER for o in results[tool.name])
        total.append(f"**{caught} / {len(samples)} ({100 * caught / len(samples):.0f} %)**")
    print(_table(["family", "samples", *[t.name for t in tools]], [*fam_rows, total]))
    print()
    missed = [f"- `{s.name}` ({s.family}): {results['mlaudit'][i].detail[:160]}"
              for i, s in enumerate(samples) if results["mlaudit"][i].kind not in STOPS_USER]
    refused = [f"- `{s.name}`: {results['mlaudit'][i].detail[:160]}"
               for i, s in enumerate(samples) if results["mlaudit"][i].kind == REFUSED]
    print("mlaudit missed: " + ("none" if not missed else "\n\n" + "\n".join(missed)) + "\n")
    if refused:
        print("mlaudit refused with `InputError`:\n")
        print("\n".join(refused))
        print()


def print_false_positives(tools: list[Tool], samples: list[Sample],
                          results: dict[str, list[Outcome]]) -> None:
    print(f"## 2. False positives of HIGH or worse: {len(samples)} benign files\n")
    print("Goal: **zero**. mlaudit: any inventory item of HIGH or worse (issue severity >= "
          "HIGH, DANGEROUS or UNLISTED import, scan problem) or an `InputError`. Peers: as in "
          "pickle_scan.py, flagged / refused / crashed = the user is stopped.\n")
    rows = [[f"`{s.path.name}`", s.family, f"{s.path.stat().st_size / 1e3:.0f}",
             *[_benign_cell(results[t.name][i]) for t in tools]] for i, s in enumerate(samples)]
    rows.append(["**stopped / total**", "", "",
                 *[f"**{sum(o.kind in STOPS_USER for o in results[t.name])} / {len(samples)}**"
                   for t in tools]])
    print(_table(["file", "family", "KB", *[t.name for t in tools]], rows))
    print()
    notes = [f"- `{s.path.name}`: {results['mlaudit'][i].kind} — {results['mlaudit'][i].detail}"
             for i, s in enumerate(samples) if results["mlaudit"][i].kind in STOPS_USER]
    print("mlaudit's HIGH+ findings on benign files: "
          + ("none" if not notes else "\n\n" + "\n".join(notes)) + "\n")


@dataclass
class LargeTiming:
    times: list[float]
    outcomes: list[Outcome]


def large_speed(tools: list[Tool], paths: list[Path], runs: int,
                timeout: float) -> dict[tuple[str, str], LargeTiming]:
    timings: dict[tuple[str, str], LargeTiming] = {}
    for run in range(runs):
        _progress(f"large files: run {run + 1} / {runs}")
        for path in paths:
            for tool in tools:
                assert tool.check is not None
                timing = timings.setdefault((path.name, tool.name), LargeTiming([], []))
                if timing.outcomes and not isinstance(timing.outcomes[-1], MeasuredOutcome):
                    continue  # timed out or crashed before: not retried
                elapsed, outcomes = run_isolated(measured(tool.check), [path], timeout)
                timing.outcomes.append(outcomes[0])
                if elapsed is not None:
                    timing.times.append(elapsed)
    return timings


def print_large(tools: list[Tool], paths: list[Path], timings: dict[tuple[str, str], LargeTiming],
                runs: int, timeout: float) -> None:
    print(f"## 3. Large benign files (median of {runs} runs, warm page cache)\n")
    print("Goals: **>= 200 MB/s** and memory bounded by a small constant. `mlaudit` = "
          "`open_model` (sha256 + sniff + scan + inventory). Memory is the scanning child's "
          "growth over its RSS at the start of the scan (the forked child starts with this "
          "process's pages): `peak RSS` = VmHWM, which counts file pages a scanner mmaps "
          "(reclaimable page cache, not allocations); `peak anon` = RssAnon sampled every "
          "10 ms (heap: the memory a scanner really allocates). Worst of the runs. Ratio = "
          "peer / mlaudit (> 1: mlaudit is faster / smaller).\n")
    for path in paths:
        size = path.stat().st_size
        print(f"### `{path.name}` — {size / 1e6:.0f} MB ({size / GIB:.2f} GiB)\n")
        base = timings[(path.name, "mlaudit")]
        base_time = statistics.median(base.times) if base.times else None
        base_anon = max((o.peak_anon_kb for o in base.outcomes
                         if isinstance(o, MeasuredOutcome)), default=None)
        rows = []
        for tool in tools:
            timing = timings[(path.name, tool.name)]
            measured_outcomes = [o for o in timing.outcomes if isinstance(o, MeasuredOutcome)]
            last = timing.outcomes[-1]
            verdict = f"{last.kind}: {last.detail[:70]}" if last.detail else last.kind
            if not timing.times or not measured_outcomes:
                what = f"> {timeout:.0f} s" if last.kind == TIMEOUT else "—"
                rows.append([tool.name, what, "—", "—", "—", "—", "—", verdict])
                continue
            median = statistics.median(timing.times)
            hwm = max(o.hwm_kb for o in measured_outcomes) / 1024
            anon = max(o.peak_anon_kb for o in measured_outcomes) / 1024
            rows.append([
                tool.name, f"{median:.2f}", f"{size / 1e6 / median:.0f}", f"{hwm:.0f}",
                f"{anon:.0f}",
                f"{median / base_time:.2f}" if base_time else "—",
                f"{anon / max(base_anon / 1024, 1):.1f}" if base_anon is not None else "—",
                verdict,
            ])
        print(_table(["tool", "median s", "MB/s", "peak RSS MiB", "peak anon MiB",
                      "time x mlaudit", "anon x mlaudit", "verdict"], rows))
        print()
        if base_time:
            rate = size / 1e6 / base_time
            print(f"mlaudit: {rate:.0f} MB/s (goal >= 200: "
                  f"{'met' if rate >= 200 else '**not met**'}), peak anon "
                  f"{base_anon / 1024 if base_anon is not None else float('nan'):.0f} MiB for a "
                  f"{size / GIB:.2f} GiB file.\n")


# --------------------------------------------------------------------------------------------


def build_corpora(root: Path, canary: Path) -> tuple[list[Sample], list[Sample]]:
    _progress("building hostile corpus ...")
    hostile = [
        Sample(s.name, _family(s), s.path)
        for s in (*build_hostile_corpus(root / "hostile-pickles", canary),
                  *build_hostile_archives(root / "hostile-archives", canary),
                  *build_hostile_formats(root / "hostile-formats", canary))
    ]
    _progress(f"  {len(hostile)} samples; building benign corpus ...")
    benign = [Sample(s.name, _SCANNER_FAMILY[s.scanner], s.path)
              for s in (*build_benign_archives(root / "benign-archives"),
                        *build_benign_formats(root / "benign-formats"))]
    benign += [Sample(b.name, "pickle", b.path)
               for b in build_benign_set(root / "benign-sklearn")]
    return hostile, benign


def print_header(gate: Tool, peers: list[Tool]) -> None:
    import joblib
    import numpy as np
    import torch

    print("# mlaudit artifact scanners vs peers\n")
    print(f"- date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"- machine: {platform.machine()}, {os.cpu_count()} shared cores, "
          f"{platform.system()} {platform.release()}, Python {platform.python_version()}")
    print(f"- torch {torch.__version__}, numpy {np.__version__}, joblib {joblib.__version__}")
    print(f"- tools: mlaudit {gate.version}, "
          + ", ".join(f"{p.name} {p.version}" for p in peers
                      if p.name != "picklescan --strict") + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per tool, large files")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds one large-file scan may take before the tool is given up")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "mlaudit-bench-large",
                        help="where the large files are written")
    parser.add_argument("--keep", action="store_true", help="keep the large files afterwards")
    parser.add_argument("--no-joblib", action="store_true", help="skip the large joblib file")
    parser.add_argument("--skip-large", action="store_true", help="tables 1 and 2 only")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    gate, _scan_only, peers = discover_tools()
    peers = [p for p in peers if p.available]
    tools = [gate, *peers]
    fp_tools = [Tool("mlaudit", gate.version, _mlaudit_high), *peers]
    large_tools = [Tool("mlaudit", gate.version, _mlaudit_open), *peers]

    try:
        with tempfile.TemporaryDirectory(prefix="mlaudit-artifact-bench-") as temp:
            root = Path(temp)
            canary = root / "CANARY-a-hostile-sample-was-loaded"
            hostile, benign = build_corpora(root, canary)

            # Warm every tool up (lazy imports) before the children fork.
            with (open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink),
                  contextlib.redirect_stderr(sink)):
                for tool in (*tools, fp_tools[0]):
                    assert tool.check is not None
                    with contextlib.suppress(Exception):
                        tool.check(benign[0].path)

            hostile_results = scan_each(tools, [s.path for s in hostile], "detection")
            benign_results = scan_each(fp_tools, [s.path for s in benign], "false positives")

            large: list[Path] = []
            timings: dict[tuple[str, str], LargeTiming] = {}
            if not args.skip_large:
                large.append(build_large(args.cache_dir, "state_dict_1GiB.pt", _write_torch))
                if not args.no_joblib:
                    large.append(build_large(args.cache_dir, "arrays_1GiB.joblib",
                                             _write_joblib))
                timings = large_speed(large_tools, large, args.runs, args.timeout)

            print_header(gate, peers)
            print_detection(tools, hostile, hostile_results)
            print_false_positives(fp_tools, benign, benign_results)
            if large:
                print_large(large_tools, large, timings, args.runs, args.timeout)
            print(f"Total benchmark wall time: {time.perf_counter() - started:.0f} s\n")

            assert not canary.exists(), f"a hostile sample was executed: {canary} exists"
            print(f"Canary check: `{canary.name}` does not exist — no hostile sample was "
                  "loaded.")
    finally:
        if not args.keep and not args.skip_large:
            shutil.rmtree(args.cache_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
