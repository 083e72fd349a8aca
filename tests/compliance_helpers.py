"""Shared by the compliance tests: real scans run in-process, real keys, signed reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mlaudit.cli.main import main
from mlaudit.compliance.attest import generate_keys, load_signing_key, sign_report


def run(*arguments: str | Path) -> int:
    """``mlaudit`` in-process; the exit code."""
    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in arguments])
    code = exited.value.code
    return code if isinstance(code, int) else 0


def scan(directory: Path, model: Path, *arguments: str | Path, config: str = "") -> int:
    """A quick scan into ``directory`` with its own config file (``config`` is its text)."""
    config_file = directory.parent / f"{directory.name}.toml"
    config_file.write_text(config)
    return run(
        "scan", model, *arguments, "--config", config_file, "--profile", "quick", "-q",
        "-o", directory,
    )


def keys(directory: Path) -> tuple[Path, Path]:
    """A fresh unencrypted Ed25519 pair: (private, public)."""
    return generate_keys(directory, None)


def report(directory: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((directory / "report.json").read_text())
    return loaded


def resign(report_document: dict[str, Any], private_key: Path) -> tuple[bytes, bytes]:
    """A report (changed by the caller) re-serialised and signed: (report bytes, envelope)."""
    data = (json.dumps(report_document, indent=2) + "\n").encode()
    return data, sign_report(data, load_signing_key(private_key, None), datetime.now(UTC))
