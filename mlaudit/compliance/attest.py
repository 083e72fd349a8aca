"""Signed attestations: a DSSE envelope around an in-toto Statement v1, signed with Ed25519.

Layout of ``report.intoto.json``::

    {"payloadType": "application/vnd.in-toto+json",
     "payload": base64(statement),
     "signatures": [{"keyid": sha256(public key, DER SubjectPublicKeyInfo), "sig": base64}]}

The signature is over DSSE's pre-authentication encoding of the payload type and payload, so
neither can be swapped. The statement's subjects are the audited files by sha256 (the model,
annotated ``mlaudit.role: model``, and every data file, annotated with its role); its
predicate (:data:`PREDICATE_TYPE`) binds the report by sha256 and repeats what an auditor asks
about without opening it: gate, score, grade, tool and rule versions, thresholds, waivers,
baseline and the vulnerability database digest.

Verification takes the public key from the caller only, never from the envelope, and fails
closed: the envelope must be exactly the bytes mlaudit writes (so no byte of it, signed or
not, can change unnoticed), carry one signature by that key, and hold a statement of our
predicate type; then every digest the caller gives is recomputed, the audit's age checked,
and the gate must have passed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mlaudit.core.errors import UsageError
from mlaudit.core.findings import JsonValue

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
# Our own predicate, versioned in its URI: a change to its meaning gets a new version.
PREDICATE_TYPE = "https://mlaudit.dev/attestation/audit/v1"
PRIVATE_KEY_NAME = "mlaudit.key"
PUBLIC_KEY_NAME = "mlaudit.pub"
PASSPHRASE_ENV = "MLAUDIT_KEY_PASSPHRASE"  # noqa: S105 (the variable's name, not a secret)
ROLE = "mlaudit.role"
# Clocks disagree a little; an audit a few minutes "in the future" is not tampering.
CLOCK_SKEW = timedelta(minutes=5)
_DURATION = re.compile(r"^([1-9][0-9]*)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class VerificationError(Exception):
    """The envelope or statement is not what mlaudit signs (exit 1: a failed verification)."""


# --------------------------------------------------------------------------- keys


def key_id(public_key: Ed25519PublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def generate_keys(directory: Path, passphrase: bytes | None) -> tuple[Path, Path]:
    """An Ed25519 pair: PKCS8 PEM private key (encrypted when given a passphrase, mode 0600)
    and SubjectPublicKeyInfo PEM public key. Never overwrites a key."""
    private_path, public_path = directory / PRIVATE_KEY_NAME, directory / PUBLIC_KEY_NAME
    for path in (private_path, public_path):
        if path.exists():
            raise UsageError(f"{path} exists; mlaudit never overwrites a key")
    key = Ed25519PrivateKey.generate()
    encryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Created with 0600 from the start: a private key must never be readable by others,
        # not even between a write and a chmod.
        descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(private_pem)
        public_path.write_bytes(public_pem)
    except OSError as error:
        raise UsageError(f"cannot write keys to {directory}: {error.strerror}") from None
    return private_path, public_path


def read_input(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {what} {path}: {error.strerror}") from None


def passphrase_from_environment() -> bytes | None:
    """The private key's passphrase: only ever from the environment, never an option (an
    option would land in shell history and in the report's recorded command)."""
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode("utf-8") if value else None


def load_signing_key(path: Path, passphrase: bytes | None) -> Ed25519PrivateKey:
    data = read_input(path, "key")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError:
        raise UsageError(
            f"{path} is encrypted: set {PASSPHRASE_ENV}"
            if not passphrase
            else f"{path} is not encrypted: unset {PASSPHRASE_ENV}"
        ) from None
    except ValueError:
        raise UsageError(
            f"{path} is not a PEM private key, or {PASSPHRASE_ENV} is not its passphrase"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path} is not an Ed25519 key")
    return key


def load_verify_key(path: Path) -> Ed25519PublicKey:
    data = read_input(path, "key")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise UsageError(f"{path} is not a PEM public key (SubjectPublicKeyInfo)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{path} is not an Ed25519 public key")
    return key


# --------------------------------------------------------------------------- signing


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what is actually signed."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _canonical(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _role_subjects(report: Mapping[str, Any]) -> list[dict[str, JsonValue]]:
    model = report["subject"]["model"]
    files = [("model", model["path"], model["sha256"], model["format"])]
    files += [(d["role"], d["path"], d["sha256"], None) for d in report["subject"]["data"]]
    subjects: list[dict[str, JsonValue]] = []
    for role, name, digest, model_format in files:
        if digest is None:
            continue  # a model given as module:callable has no file to bind
        annotations: dict[str, JsonValue] = {ROLE: role}
        if model_format is not None:
            annotations["mlaudit.format"] = model_format
        subjects.append({"name": name, "digest": {"sha256": digest}, "annotations": annotations})
    return subjects


def _vulnerability_database(report: Mapping[str, Any]) -> JsonValue:
    """The OSV export the vulnerability rule (MLA601) read, as its metrics record it: the
    digest pins what "no known vulnerability" meant on the day. None when it did not run."""
    for result in report["results"]:
        database = (result.get("metrics") or {}).get("database")
        if result["family"] == "dependencies" and isinstance(database, dict):
            return {key: database.get(key) for key in ("sha256", "path", "newest_modified")}
    return None


def statement(
    report: Mapping[str, Any], report_bytes: bytes, signed_at: datetime
) -> dict[str, Any]:
    """The in-toto statement for a report, from the report alone (``mlaudit sign`` later signs
    the same statement the scan would have)."""
    subjects = _role_subjects(report)
    if not subjects:
        raise UsageError("nothing to attest: the report binds no model or data file by sha256")
    config = report["run"]["config"]
    predicate = {
        "report": {
            "sha256": hashlib.sha256(report_bytes).hexdigest(),
            "schemaVersion": report["schema_version"],
            "runId": report["run"]["id"],
        },
        "auditedAt": report["run"]["finished_at"],
        "signedAt": signed_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "tool": {"name": report["tool"]["name"], "version": report["tool"]["version"]},
        "rules": {
            r["rule_id"]: {
                "version": report["tool"].get("rules", {}).get(r["rule_id"]),
                "status": r["status"],
            }
            for r in report["results"]
        },
        "seed": report["run"]["seed"],
        "profile": report["run"]["profile"],
        "thresholds": {
            "failOn": config["fail_on"],
            "minScore": config["min_score"],
            "allowIncomplete": config["allow_incomplete"],
            "ruleOptions": config["rules"],
            "tolerances": config.get("tolerances"),
        },
        "gate": {"passed": report["gate"]["passed"], "reasons": report["gate"]["reasons"]},
        "score": report["score"],
        "grade": report["grade"],
        "waivers": report.get("waivers", []),
        "suppressed": [
            {"ruleId": s["finding"]["rule_id"], "fingerprint": s["finding"]["fingerprint"]}
            for s in report.get("suppressed", [])
        ],
        "baseline": (
            {"sha256": report["baseline"]["sha256"], "runId": report["baseline"]["run_id"]}
            if report.get("baseline")
            else None
        ),
        "vulnerabilityDatabase": _vulnerability_database(report),
    }
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def sign_statement(document: Mapping[str, Any], key: Ed25519PrivateKey) -> bytes:
    """The envelope file's bytes."""
    payload = _canonical(document)
    signature = key.sign(pae(PAYLOAD_TYPE, payload))
    return _canonical(
        {
            "payloadType": PAYLOAD_TYPE,
            "payload": base64.b64encode(payload).decode("ascii"),
            "signatures": [
                {
                    "keyid": key_id(key.public_key()),
                    "sig": base64.b64encode(signature).decode("ascii"),
                }
            ],
        }
    )


def sign_report(report_bytes: bytes, key: Ed25519PrivateKey, now: datetime) -> bytes:
    try:
        report = json.loads(report_bytes)
        document = statement(report, report_bytes, now)
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"cannot attest the report: it is incomplete ({error})") from None
    return sign_statement(document, key)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    key_id: str
    signature: bytes


def _b64(text: object, what: str) -> bytes:
    """Strict base64: the decoded bytes must encode back to exactly ``text``, so that no
    unused bit of the encoding can be flipped unnoticed."""
    if not isinstance(text, str):
        raise VerificationError(f"{what} is not a string")
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError(f"{what} is not valid base64") from None
    if base64.b64encode(decoded).decode("ascii") != text:
        raise VerificationError(f"{what} is not canonical base64")
    return decoded


def parse_envelope(data: bytes) -> Envelope:
    """The envelope as mlaudit writes it, or :class:`VerificationError` saying what is wrong."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise VerificationError(f"not a JSON document ({error})") from None
    if not isinstance(document, dict) or set(document) != {"payloadType", "payload", "signatures"}:
        raise VerificationError("not a DSSE envelope (payloadType, payload, signatures)")
    signatures = document["signatures"]
    if not isinstance(signatures, list) or len(signatures) != 1:
        raise VerificationError("expected exactly one signature")
    (signature,) = signatures
    if not isinstance(signature, dict) or set(signature) != {"keyid", "sig"}:
        raise VerificationError("the signature entry must hold keyid and sig")
    if not isinstance(document["payloadType"], str) or not isinstance(signature["keyid"], str):
        raise VerificationError("payloadType and keyid must be strings")
    if _canonical(document) != data:
        # The same JSON with other bytes: whitespace, escapes, key order. Nothing mlaudit
        # wrote, so something edited the file after signing.
        raise VerificationError("the bytes differ from the envelope as written (edited?)")
    return Envelope(
        document["payloadType"],
        _b64(document["payload"], "payload"),
        signature["keyid"],
        _b64(signature["sig"], "signature"),
    )


def parse_statement(payload: bytes) -> dict[str, Any]:
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise VerificationError(f"payload is not JSON ({error})") from None
    if not isinstance(document, dict) or document.get("_type") != STATEMENT_TYPE:
        raise VerificationError(f"payload is not an in-toto statement ({STATEMENT_TYPE})")
    if document.get("predicateType") != PREDICATE_TYPE:
        raise VerificationError(
            f"predicate type is {document.get('predicateType')!r}, not {PREDICATE_TYPE}"
        )
    subjects, predicate = document.get("subject"), document.get("predicate")
    if not isinstance(subjects, list) or not subjects or not all(
        isinstance(s, dict) and isinstance(s.get("digest"), dict) for s in subjects
    ):
        raise VerificationError("the statement has no subjects with digests")
    shapes = {"report": dict, "auditedAt": str, "gate": dict, "score": int | float, "grade": str}
    if not isinstance(predicate, dict) or not all(
        isinstance(predicate.get(key), shape) for key, shape in shapes.items()
    ):
        raise VerificationError(f"the predicate lacks one of {', '.join(shapes)}")
    return document


def read_statement(data: bytes) -> dict[str, Any]:
    """The statement inside an envelope, its signature unchecked (for indexing an archive)."""
    envelope = parse_envelope(data)
    if envelope.payload_type != PAYLOAD_TYPE:
        raise VerificationError(f"payload type is {envelope.payload_type!r}, not {PAYLOAD_TYPE}")
    return parse_statement(envelope.payload)


def attested_files(document: Mapping[str, Any], *, model: bool) -> list[tuple[str, str]]:
    """(name, sha256) of the statement's model subject, or of its data subjects."""
    found = []
    for subject in document["subject"]:
        is_model = (subject.get("annotations") or {}).get(ROLE) == "model"
        if is_model == model:
            found.append((str(subject.get("name")), str(subject["digest"].get("sha256"))))
    return found


# --------------------------------------------------------------------------- verifying


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Given:
    """What the verifier was handed to check against: digests it computed itself."""

    report: tuple[str, str] | None = None  # (name as given, sha256)
    model: tuple[str, str] | None = None  # (name as given, sha256)
    data: tuple[tuple[str, str], ...] = ()
    max_age: timedelta | None = None


@dataclass(frozen=True)
class Verification:
    checks: tuple[Check, ...]
    statement: Mapping[str, Any] | None

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.ok)


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``2w``, ``30m``, ``45s``."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise UsageError(f"--max-age must be a number and a unit (s m h d w) like 90d: {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _timestamp(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def _short(digest: str) -> str:
    return digest[:16] + "…"


def authenticate(data: bytes, public_key: Ed25519PublicKey) -> Verification:
    """The envelope, signature and statement checks; ``statement`` is set only when all three
    pass, because an unauthenticated payload proves nothing."""
    checks: list[Check] = []
    try:
        envelope = parse_envelope(data)
    except VerificationError as error:
        return Verification((Check("envelope", False, str(error)),), None)
    checks.append(Check("envelope", True, "DSSE, one signature"))
    expected_id = key_id(public_key)
    try:
        public_key.verify(envelope.signature, pae(envelope.payload_type, envelope.payload))
    except InvalidSignature:
        named = "" if envelope.key_id == expected_id else (
            f" (the envelope names key {_short(envelope.key_id)}, given {_short(expected_id)})"
        )
        failure = Check("signature", False, "not a valid signature by the given key" + named)
        return Verification((*checks, failure), None)
    if envelope.key_id != expected_id:
        # keyid is outside the signed bytes; a valid signature under a changed keyid means
        # the envelope was edited, and an edited envelope does not verify.
        failure = Check("signature", False, "the keyid was changed after signing")
        return Verification((*checks, failure), None)
    checks.append(Check("signature", True, f"Ed25519, key {_short(expected_id)}"))
    try:
        if envelope.payload_type != PAYLOAD_TYPE:
            raise VerificationError(f"payload type {envelope.payload_type!r}, not {PAYLOAD_TYPE}")
        document = parse_statement(envelope.payload)
    except VerificationError as error:
        return Verification((*checks, Check("statement", False, str(error))), None)
    checks.append(Check("statement", True, f"in-toto v1, predicate {PREDICATE_TYPE}"))
    return Verification(tuple(checks), document)


def verify(
    data: bytes, public_key: Ed25519PublicKey, given: Given, now: datetime
) -> Verification:
    """Every check, in order: :func:`authenticate`, then the digests the caller computed, the
    audit's age, and the gate."""
    authenticated = authenticate(data, public_key)
    document = authenticated.statement
    if document is None:
        return authenticated
    checks = list(authenticated.checks)
    predicate = document["predicate"]
    if given.report is not None:
        name, digest = given.report
        attested = str(predicate["report"].get("sha256"))
        checks.append(_digest_check("report", name, digest, [("", attested)]))
    if given.model is not None:
        name, digest = given.model
        checks.append(_digest_check("model", name, digest, attested_files(document, model=True)))
    for name, digest in given.data:
        checks.append(_digest_check("data", name, digest, attested_files(document, model=False)))
    if given.max_age is not None:
        checks.append(_age_check(predicate["auditedAt"], given.max_age, now))
    passed = predicate["gate"].get("passed") is True
    checks.append(
        Check(
            "gate",
            passed,
            f"{'passed' if passed else 'failed'} (score {predicate['score']}, grade "
            f"{predicate['grade']})",
        )
    )
    return Verification(tuple(checks), document)


def _digest_check(
    name: str, label: str, digest: str, attested: Sequence[tuple[str, str]]
) -> Check:
    for subject_name, expected in attested:
        if digest == expected:
            of = f" attested as {subject_name}" if subject_name not in ("", label) else ""
            return Check(name, True, f"{label}: sha256 {_short(digest)} matches{of}")
    if not attested:
        return Check(name, False, f"{label}: the attestation binds no {name} file")
    bound = ", ".join(f"{n or name} {_short(d)}" for n, d in attested)
    return Check(name, False, f"{label}: sha256 {_short(digest)} is not the attested {bound}")


def _age_check(audited_at: object, max_age: timedelta, now: datetime) -> Check:
    moment = _timestamp(audited_at)
    if moment is None:
        return Check("age", False, f"audit time {audited_at!r} is not a timestamp")
    age = now - moment
    if age < -CLOCK_SKEW:
        return Check("age", False, f"audited {audited_at}, which is in the future")
    days = max(age, timedelta(0)) / timedelta(days=1)
    limit = max_age / timedelta(days=1)
    ok = age <= max_age
    return Check(
        "age", ok, f"audited {audited_at}, {days:.1f} days ago ({'within' if ok else 'over'} "
        f"the limit of {limit:g} days)"
    )
