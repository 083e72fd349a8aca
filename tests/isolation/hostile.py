"""A trusted hostile model for the isolation tests: the source of a module the tests put on
``PYTHONPATH``, and the scans that load it.

Its ``__setstate__`` (at load) and ``predict`` (on a rule's batch, never on the load-time probe
of at most 8 rows) try every escape the worker must stop, and report each outcome as a warning,
which the worker forwards into the report. ``mode`` picks a crash instead: a segfault, an
allocation past the address-space limit, or a sleep past the rule's budget.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODULE = "hostile_model"
SOURCE = textwrap.dedent('''
    import ctypes, os, socket, subprocess, time, warnings
    import numpy as np

    class Hostile:
        classes_ = np.array([0, 1])
        acted = False

        def __init__(self, plan):
            self.plan = plan

        def __getstate__(self):
            return {"plan": self.plan}

        def __setstate__(self, state):
            self.plan = state["plan"]
            if self.plan["mode"] == "escape":
                self._escape("setstate")

        def _escape(self, when):
            plan = self.plan
            attempts = {
                "write": lambda: open(plan["outside"] + "." + when, "w").write("escaped"),
                "connect": lambda: socket.create_connection(
                    ("127.0.0.1", plan["port"]), timeout=2).sendall(when.encode()),
                "subprocess": lambda: subprocess.run(
                    ["touch", plan["touched"] + ".subprocess." + when], check=True),
                "system": lambda: _checked(os.system(
                    "touch " + plan["touched"] + ".system." + when)),
                "read": lambda: open(plan["secret"]).read(),
            }
            for name, attempt in attempts.items():
                try:
                    attempt()
                except Exception as error:
                    outcome = type(error).__name__
                else:
                    outcome = "ok"
                warnings.warn(f"escape {when} {name}: {outcome}")

        def _act(self, rows):
            mode = self.plan["mode"]
            if rows <= 8 or (mode == "escape" and Hostile.acted):
                return
            Hostile.acted = True
            if mode == "escape":
                self._escape("predict")
            elif mode == "segfault":
                ctypes.string_at(0)
            elif mode == "allocate":
                held = [np.empty(1 << 30, dtype=np.uint8) for _ in range(256)]
                del held
            elif mode == "sleep":
                time.sleep(60)

        def predict(self, rows):
            self._act(len(rows))
            return np.zeros(len(rows), dtype=int)

        def predict_proba(self, rows):
            self._act(len(rows))
            return np.tile([0.5, 0.5], (len(rows), 1))

    def _checked(status):
        if status != 0:
            raise OSError(f"exit status {status}")
''')
# The model-querying rules the scans run: quick, labels-free noise stability and compatibility.
RULES = ("MLA204", "MLA702")


@dataclass(frozen=True)
class Scan:
    code: int
    stderr: str
    seconds: float
    report: dict[str, Any]

    def result(self, rule_id: str) -> dict[str, Any]:
        return next(r for r in self.report["results"] if r["rule_id"] == rule_id)

    def warnings_about(self, when: str) -> dict[str, str]:
        """``attempt -> outcome`` of the escapes the model tried in ``when``."""
        prefix = f"UserWarning: escape {when} "
        found = {}
        for line in self.report["run"]["warnings"]:
            if line.startswith(prefix):
                name, _, outcome = line[len(prefix):].partition(": ")
                found[name] = outcome
        return found


@dataclass(frozen=True)
class Arena:
    """A temporary tree: the module folder, a fake HOME with a secret, a working folder."""

    root: Path
    port: int

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    @property
    def touched(self) -> Path:
        return self.root / "touched"

    @property
    def secret(self) -> Path:
        return self.root / "home" / ".ssh" / "id_ed25519"

    @property
    def work(self) -> Path:
        return self.root / "work"

    def _plan(self, mode: str) -> dict[str, Any]:
        package = self.root / "pkg"
        package.mkdir(exist_ok=True)
        (package / f"{MODULE}.py").write_text(SOURCE)
        self.secret.parent.mkdir(parents=True, exist_ok=True)
        self.secret.write_text("PRIVATE KEY")
        self.work.mkdir(exist_ok=True)
        rows = ["a,b,c,d,y", *(f"{i},{i % 3},{i % 5},{i % 7},{i % 2}" for i in range(40))]
        (self.work / "data.csv").write_text("\n".join(rows) + "\n")
        return {"mode": mode, "outside": str(self.outside), "port": self.port,
                "touched": str(self.touched), "secret": str(self.secret)}

    def write_entry_point(self, mode: str) -> str:
        """A ``module:callable`` model in the working folder, built when imported."""
        plan = self._plan(mode)
        (self.work / "hostile_entry.py").write_text(
            f"from {MODULE} import Hostile\nmodel = Hostile({plan!r})\n"
        )
        return "hostile_entry:model"

    def write_model(self, mode: str) -> Path:
        """The hostile model pickled: loading it calls ``__setstate__``."""
        plan = self._plan(mode)
        package = self.root / "pkg"
        sys.path.insert(0, str(package))
        try:
            module = __import__(MODULE)
            data = pickle.dumps(module.Hostile(plan), protocol=4)
        finally:
            sys.path.remove(str(package))
            sys.modules.pop(MODULE, None)
        model = self.work / f"{mode}.pkl"
        model.write_bytes(data)
        return model

    def scan(self, model: Path | str, *options: str, config: str = "") -> Scan:
        work = self.work
        (work / "mlaudit.toml").write_text(config)
        output = work / f"report-{len(list(work.iterdir()))}"
        command = [
            sys.executable, "-m", "mlaudit", "scan", str(model), "--data", "data.csv",
            "--trust-model", "--profile", "quick", "-q", "-o", str(output),
            *(f"--select={rule}" for rule in RULES), *options,
        ]
        environment = {
            **os.environ, "PYTHONPATH": str(self.root / "pkg"), "HOME": str(self.secret.parents[1])
        }
        started = time.monotonic()
        done = subprocess.run(
            command, cwd=work, env=environment, capture_output=True, text=True, timeout=120,
            check=False,
        )
        seconds = time.monotonic() - started
        report_file = output / "report.json"
        report = json.loads(report_file.read_text()) if report_file.exists() else {}
        return Scan(done.returncode, done.stderr, seconds, report)


def listener() -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    return server


def accepted(server: socket.socket) -> list[bytes]:
    """What every connection made to ``server`` so far sent."""
    received: list[bytes] = []
    while True:
        try:
            connection, _ = server.accept()
        except TimeoutError:
            return received
        with connection:
            connection.settimeout(1)
            received.append(connection.recv(100))
