"""The load gate: the one place that decides whether a model file may be loaded.

Default-deny. A file is loaded only if the static inventory shows nothing outside the
allowlist, the scanner could vouch for every byte it walked, and no artifact rule reported
anything high or worse (rules of the artifact-safety family only: personal data read from
the file's bytes is no reason to refuse loading it). ``--trust-model`` overrides, and the
report says so.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from mlaudit.core.findings import Family, RuleResult, Severity
from mlaudit.scanners.pickle_policy import Verdict
from mlaudit.scanners.sniff import TREE_MODEL_FORMATS, ModelFormat
from mlaudit.subject.build import ModelArtifact

_INVENTORY_RULES = frozenset({"MLA101", "MLA102", "MLA103", "MLA104", "MLA106", "MLA107"})


class LoadStatus(enum.Enum):
    ALLOWED = "allowed"
    BLOCKED = "blocked"
    TRUSTED = "trusted"


@dataclass(frozen=True)
class LoadDecision:
    status: LoadStatus
    reasons: tuple[str, ...]

    @property
    def may_load(self) -> bool:
        return self.status is not LoadStatus.BLOCKED

    def summary(self) -> str:
        return "; ".join(self.reasons)


def _member_text(member: str | None) -> str:
    return f" in {member}" if member else ""


def _offset_text(offsets: Sequence[int]) -> str:
    return f" at offset {offsets[0]}" if offsets and offsets[0] >= 0 else ""


def decide(
    artifact: ModelArtifact, artifact_results: Sequence[RuleResult], *, trust_model: bool
) -> LoadDecision:
    reasons: list[str] = []
    inventory = artifact.inventory
    for name in inventory.names:
        verdict = name.classification.verdict
        where = f"{_member_text(name.member)}{_offset_text(name.offsets)}"
        if verdict is Verdict.DANGEROUS:
            reasons.append(
                f"MLA101 {name.qualified_name}{where} ({name.classification.reason})"
            )
        elif verdict is Verdict.UNLISTED:
            reasons.append(f"MLA102 {name.qualified_name}{where} (unlisted)")
    for located in inventory.problems:
        reasons.append(
            f"MLA101 {located.problem.kind}{_member_text(located.member)} "
            f"at offset {located.problem.offset}"
        )
    for issue in inventory.issues:
        if issue.severity >= Severity.HIGH:
            reasons.append(f"{issue.rule_id} {issue.title}{_member_text(issue.member)}")
    for result in artifact_results:
        if result.family != Family.ARTIFACT.value:
            # Other families read the bytes too (personal data memorised in the file), but
            # what they find says nothing about whether loading runs code.
            continue
        for finding in result.findings:
            # Inventory-backed rules are judged above from the inventory itself, so their
            # verdict holds whether or not they were selected.
            if finding.severity >= Severity.HIGH and finding.rule_id not in _INVENTORY_RULES:
                reasons.append(f"{finding.rule_id} {finding.title}")
    if trust_model:
        return LoadDecision(
            LoadStatus.TRUSTED,
            ("--trust-model: loaded without the gate's protection", *reasons),
        )
    if reasons:
        return LoadDecision(LoadStatus.BLOCKED, tuple(reasons))
    return LoadDecision(LoadStatus.ALLOWED, (_clean_reason(artifact),))


def _clean_reason(artifact: ModelArtifact) -> str:
    model_format = artifact.format
    if model_format is ModelFormat.ENTRY_POINT:
        return "entry point named by the user, who vouches for its code"
    if model_format is ModelFormat.ONNX:
        return "ONNX carries no Python code to import"
    if model_format in TREE_MODEL_FORMATS:
        return f"{model_format.value} holds trees and numbers, no Python code to import"
    if model_format is ModelFormat.MODEL_FOLDER:
        return "every file in the folder was scanned; none imports outside the allowlist"
    if model_format is ModelFormat.SAFETENSORS:
        return "safetensors carries tensors only, no code"
    if artifact.inventory.format_detail == "torchscript-zip":
        return (
            "every import is on the allowlist, and the TorchScript code (run by torch's "
            "interpreter, not Python's) reaches no files (MLA104)"
        )
    return "every import is on the allowlist"
