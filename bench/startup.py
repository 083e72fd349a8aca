"""How long `mlaudit --help` (and `mlaudit verify --help`) take to start, against an older tree.

Run from the repository root::

    .venv/bin/python bench/startup.py [--before PATH_TO_OLDER_CHECKOUT] [--runs 15]

Each command runs ``--runs`` times in a fresh interpreter (this venv's Python, with the tree
first on ``PYTHONPATH``), alternating between the trees so machine noise hits both alike; the
table gives the median and the ratio. The goal (issue 16) is under 0.3 s for ``--help``: a
command's heavy imports (the rules, numpy, scipy, pandas, the crypto library) happen when it
runs, not when its help is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (("--help",), ("verify", "--help"), ("scan", "--help"))
# The console entry point of both layouts: mlaudit.cli was a module, it is now a package.
LAUNCH = (
    "import sys\n"
    "try:\n    from mlaudit.cli.main import main\n"
    "except ImportError:\n    from mlaudit.cli import main\n"
    "sys.argv[0] = 'mlaudit'\nmain()\n"
)


def _seconds(tree: Path, arguments: tuple[str, ...]) -> float:
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    subprocess.run(
        # From inside the tree: `python -c` puts the working directory first on sys.path.
        [sys.executable, "-c", LAUNCH, *arguments], env=environment, check=True, cwd=tree,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="an older checkout to compare with")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    trees = {"now": REPO_ROOT, **({"before": args.before.resolve()} if args.before else {})}
    print("| command | " + " | ".join(f"{name} median (s)" for name in trees)
          + (" | before / now |" if args.before else " |"))
    print("|---|" + "---|" * (len(trees) + bool(args.before)))
    for arguments in COMMANDS:
        times: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(args.runs):
            for name, tree in trees.items():
                times[name].append(_seconds(tree, arguments))
        medians = {name: statistics.median(values) for name, values in times.items()}
        cells = " | ".join(f"{medians[name]:.3f}" for name in trees)
        ratio = f" | {medians['before'] / medians['now']:.1f}x" if args.before else ""
        print(f"| mlaudit {' '.join(arguments)} | {cells}{ratio} |")


if __name__ == "__main__":
    main()
