"""Signing and verification: real Ed25519 keys, real envelopes, and tampering that must fail."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlaudit.compliance import ENVELOPE_NAME
from mlaudit.compliance.attest import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    Given,
    generate_keys,
    key_id,
    load_signing_key,
    load_verify_key,
    pae,
    parse_duration,
    statement,
    verify,
)
from mlaudit.core.errors import UsageError
from tests.compliance_helpers import keys, report, resign, scan
from tests.conftest import TARGET, CliResult, Runner, Workspace


@dataclass(frozen=True)
class Signed:
    """A signed scan of the workspace forest, with copies of its inputs safe to tamper with."""

    directory: Path
    envelope: Path
    report: Path
    model: Path
    data: Path
    private: Path
    public: Path


@pytest.fixture(scope="module")
def signed(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Signed:
    root = tmp_path_factory.mktemp("signed")
    private, public = keys(root / "keys")
    model, data = root / "rf.joblib", root / "holdout.csv"
    shutil.copy(workspace.rf_joblib, model)
    shutil.copy(workspace.holdout, data)
    out = root / "report"
    code = scan(out, model, "--data", data, "--target", TARGET, "--select", "MLA1",
                "--select", "MLA702", "--sign-key", private)
    assert code == 0
    return Signed(out, out / ENVELOPE_NAME, out / "report.json", model, data, private, public)


def verify_cli(run_cli: Runner, signed: Signed, *extra: str | Path) -> CliResult:
    return run_cli("verify", signed.envelope, "--key", signed.public, *extra)


def flipped(source: Path, target: Path, position: int) -> Path:
    data = bytearray(source.read_bytes())
    data[position % len(data)] ^= 0x01
    target.write_bytes(bytes(data))
    return target


def assert_failed(result: CliResult, check: str) -> None:
    assert result.exit_code == 1, result.stdout + result.stderr
    assert f"FAIL  {check}:" in result.stdout, result.stdout
    assert result.stderr.strip().endswith(f"verification failed: {check}") or (
        check in result.stderr
    )
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- the format


def test_pae_matches_the_dsse_specification() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_scan_writes_a_dsse_envelope_around_an_in_toto_statement(signed: Signed) -> None:
    envelope = json.loads(signed.envelope.read_bytes())
    assert envelope["payloadType"] == PAYLOAD_TYPE
    (signature,) = envelope["signatures"]
    assert signature["keyid"] == key_id(load_verify_key(signed.public))
    document = json.loads(base64.b64decode(envelope["payload"]))
    assert document["_type"] == STATEMENT_TYPE
    assert document["predicateType"] == PREDICATE_TYPE
    written = report(signed.directory)
    digests = {s["annotations"]["mlaudit.role"]: s["digest"]["sha256"] for s in document["subject"]}
    assert digests == {
        "model": written["subject"]["model"]["sha256"],
        "data": written["subject"]["data"][0]["sha256"],
    }
    predicate = document["predicate"]
    assert predicate["report"]["sha256"] == hashlib.sha256(signed.report.read_bytes()).hexdigest()
    assert predicate["gate"]["passed"] is True
    assert predicate["score"] == written["score"]
    assert predicate["grade"] == written["grade"]
    assert predicate["tool"]["version"] == written["tool"]["version"]
    assert set(predicate["rules"]) == {r["rule_id"] for r in written["results"]}
    assert predicate["thresholds"]["failOn"] == "high"
    assert predicate["waivers"] == []
    assert predicate["vulnerabilityDatabase"] is None
    assert predicate["auditedAt"] == written["run"]["finished_at"]


def test_everything_given_verifies(run_cli: Runner, signed: Signed) -> None:
    result = verify_cli(
        run_cli, signed, "--report", signed.report, "--model", signed.model,
        "--data", signed.data, "--max-age", "90d",
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    for check in ("envelope", "signature", "statement", "report", "model", "data", "age", "gate"):
        assert f"ok    {check}:" in result.stdout
    assert "verified" in result.stdout


def test_sign_command_signs_an_existing_report(
    run_cli: Runner, signed: Signed, tmp_path: Path
) -> None:
    out = tmp_path / "again.intoto.json"
    result = run_cli("sign", signed.report, "--key", signed.private, "-o", out)
    assert result.exit_code == 0, result.stderr
    check = run_cli("verify", out, "--key", signed.public, "--report", signed.report)
    assert check.exit_code == 0, check.stdout


# --------------------------------------------------------------------------- tampering


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0), mask=st.integers(min_value=1, max_value=255))
def test_any_changed_byte_of_the_envelope_fails(signed: Signed, position: int, mask: int) -> None:
    data = bytearray(signed.envelope.read_bytes())
    data[position % len(data)] ^= mask
    result = verify(bytes(data), load_verify_key(signed.public), Given(), datetime.now(UTC))
    assert not result.ok
    assert result.failed[0].name in ("envelope", "signature", "statement")


def test_a_flipped_envelope_byte_fails_on_the_command_line(
    run_cli: Runner, signed: Signed, tmp_path: Path
) -> None:
    # A byte inside the base64 payload: the JSON still parses, the signature does not hold.
    text = signed.envelope.read_bytes()
    position = text.index(b'"payload":"') + 40
    tampered = flipped(signed.envelope, tmp_path / ENVELOPE_NAME, position)
    result = run_cli("verify", tampered, "--key", signed.public)
    assert_failed(result, "signature")


@pytest.mark.parametrize("position", [0, 1000, -1])
def test_a_flipped_report_byte_fails(
    run_cli: Runner, signed: Signed, tmp_path: Path, position: int
) -> None:
    tampered = flipped(signed.report, tmp_path / "report.json", position)
    assert_failed(verify_cli(run_cli, signed, "--report", tampered), "report")


@pytest.mark.parametrize("position", [0, 5000, -1])
def test_a_flipped_model_byte_fails(
    run_cli: Runner, signed: Signed, tmp_path: Path, position: int
) -> None:
    tampered = flipped(signed.model, tmp_path / "rf.joblib", position)
    result = verify_cli(run_cli, signed, "--model", tampered)
    assert_failed(result, "model")
    assert "is not the attested" in result.stdout


@pytest.mark.parametrize("position", [0, 300, -2])
def test_a_flipped_data_byte_fails(
    run_cli: Runner, signed: Signed, tmp_path: Path, position: int
) -> None:
    tampered = flipped(signed.data, tmp_path / "holdout.csv", position)
    assert_failed(verify_cli(run_cli, signed, "--data", tampered), "data")


def test_another_key_does_not_verify(run_cli: Runner, signed: Signed, tmp_path: Path) -> None:
    _, other = keys(tmp_path / "other")
    result = run_cli("verify", signed.envelope, "--key", other, "--model", signed.model)
    assert_failed(result, "signature")
    assert "FAIL  model" not in result.stdout  # nothing past an unauthenticated payload


def test_an_envelope_replayed_for_another_model_fails(
    run_cli: Runner, signed: Signed, workspace: Workspace
) -> None:
    result = verify_cli(run_cli, signed, "--model", workspace.rf_pickle)
    assert_failed(result, "model")
    assert str(workspace.rf_pickle) in result.stdout


def test_an_envelope_signed_by_another_key_and_swapped_in_fails(
    run_cli: Runner, signed: Signed, tmp_path: Path
) -> None:
    """Someone re-signs an edited report with their own key: only the given key is trusted."""
    private, _ = keys(tmp_path / "attacker")
    document = report(signed.directory)
    document["gate"]["passed"] = True
    document["score"] = 100.0
    _, envelope = resign(document, private)
    forged = tmp_path / ENVELOPE_NAME
    forged.write_bytes(envelope)
    assert_failed(run_cli("verify", forged, "--key", signed.public), "signature")


def test_max_age_is_checked_against_the_audit_time(signed: Signed) -> None:
    data = signed.envelope.read_bytes()
    public = load_verify_key(signed.public)
    audited = datetime.fromisoformat(report(signed.directory)["run"]["finished_at"])
    fresh = verify(data, public, Given(max_age=timedelta(days=90)), audited + timedelta(days=89))
    assert fresh.ok
    stale = verify(data, public, Given(max_age=timedelta(days=90)), audited + timedelta(days=91))
    assert [c.name for c in stale.failed] == ["age"]
    assert "over the limit of 90 days" in stale.failed[0].detail
    future = verify(data, public, Given(max_age=timedelta(days=90)), audited - timedelta(hours=1))
    assert [c.name for c in future.failed] == ["age"]


def test_max_age_on_the_command_line(run_cli: Runner, signed: Signed, tmp_path: Path) -> None:
    document = report(signed.directory)
    document["run"]["finished_at"] = "2020-01-01T00:00:00Z"
    _data, envelope = resign(document, signed.private)
    old = tmp_path / ENVELOPE_NAME
    old.write_bytes(envelope)
    assert_failed(run_cli("verify", old, "--key", signed.public, "--max-age", "90d"), "age")
    assert run_cli("verify", old, "--key", signed.public, "--max-age", "520w").exit_code == 0


def test_a_failed_gate_does_not_verify(
    run_cli: Runner, workspace: Workspace, tmp_path: Path, signed: Signed
) -> None:
    out = tmp_path / "hostile"
    assert scan(out, workspace.hostile, "--select", "MLA1", "--sign-key", signed.private) == 1
    result = run_cli("verify", out / ENVELOPE_NAME, "--key", signed.public)
    assert_failed(result, "gate")
    assert "ok    signature" in result.stdout  # authentic: the audit itself failed


# --------------------------------------------------------------------------- unreadable input


def _usage_error(result: CliResult, fragment: str) -> None:
    assert result.exit_code == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mlaudit: error: ")
    assert fragment in lines[0]


def test_unreadable_inputs_exit_2(run_cli: Runner, signed: Signed, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    _usage_error(run_cli("verify", missing, "--key", signed.public), "cannot read envelope")
    _usage_error(run_cli("verify", signed.envelope, "--key", missing), "cannot read key")
    _usage_error(verify_cli(run_cli, signed, "--model", missing), "cannot read model")
    _usage_error(verify_cli(run_cli, signed, "--report", missing), "cannot read report")
    _usage_error(verify_cli(run_cli, signed, "--data", missing), "cannot read data")
    _usage_error(verify_cli(run_cli, signed, "--max-age", "soon"), "--max-age")
    _usage_error(run_cli("verify", signed.envelope, "--key", signed.private), "public key")
    _usage_error(run_cli("verify", signed.envelope), "--key")


def test_scan_with_an_unreadable_key_writes_no_report(
    run_cli: Runner, workspace: Workspace, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    result = run_cli("scan", workspace.rf_joblib, "--select", "MLA1", "--sign-key", bad)
    _usage_error(result, "not a PEM private key")
    assert not (result.output_dir / "report.json").exists()


# --------------------------------------------------------------------------- keys


def test_keygen_writes_a_private_key_only_its_owner_reads(run_cli: Runner, tmp_path: Path) -> None:
    result = run_cli("keygen", "--out", tmp_path / "k")
    assert result.exit_code == 0, result.stderr
    private, public = tmp_path / "k" / "mlaudit.key", tmp_path / "k" / "mlaudit.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in private.read_bytes()
    assert b"BEGIN PUBLIC KEY" in public.read_bytes()
    assert "not encrypted" in result.stderr
    assert key_id(load_verify_key(public)) in result.stdout
    again = run_cli("keygen", "--out", tmp_path / "k")
    _usage_error(again, "never overwrites")


def test_keygen_encrypts_with_the_passphrase_from_the_environment(
    run_cli: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLAUDIT_KEY_PASSPHRASE", "correct horse")
    assert run_cli("keygen", "--out", tmp_path).exit_code == 0
    private = tmp_path / "mlaudit.key"
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in private.read_bytes()
    assert load_signing_key(private, b"correct horse")
    with pytest.raises(UsageError, match="encrypted: set MLAUDIT_KEY_PASSPHRASE"):
        load_signing_key(private, None)
    with pytest.raises(UsageError, match="passphrase"):
        load_signing_key(private, b"wrong")


def test_signing_with_an_encrypted_key_needs_its_passphrase(
    run_cli: Runner, signed: Signed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_keys(tmp_path, b"s3cret")
    out = tmp_path / "e.json"
    _usage_error(run_cli("sign", signed.report, "--key", tmp_path / "mlaudit.key", "-o", out),
                 "MLAUDIT_KEY_PASSPHRASE")
    monkeypatch.setenv("MLAUDIT_KEY_PASSPHRASE", "s3cret")
    signed_now = run_cli("sign", signed.report, "--key", tmp_path / "mlaudit.key", "-o", out)
    assert signed_now.exit_code == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90d", timedelta(days=90)), ("12h", timedelta(hours=12)), ("2w", timedelta(weeks=2)),
     ("45s", timedelta(seconds=45)), ("30m", timedelta(minutes=30))],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "90", "d", "0d", "-1d", "1y", "1.5d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


def test_a_report_binding_no_file_cannot_be_attested(signed: Signed) -> None:
    document = report(signed.directory)
    document["subject"]["model"]["sha256"] = None
    document["subject"]["data"] = []
    with pytest.raises(UsageError, match="nothing to attest"):
        statement(document, b"{}", datetime.now(UTC))
