"""``report.cdx.json``: a CycloneDX 1.6 ML-BOM of the audited model.

The model is a ``machine-learning-model`` component with its sha256 and a ``modelCard``:
``modelParameters`` from the subject, ``quantitativeAnalysis.performanceMetrics`` from the
robustness and privacy metrics (with their confidence intervals), ``considerations`` from the
findings. Dependencies named by the MLA6xx rules are library components, and their known
vulnerabilities are BOM vulnerabilities affecting them.

cyclonedx-python-lib builds and serialises the BOM, but it cannot write ``modelCard`` yet, so
the card is inserted into the serialised JSON and the result is checked with the library's
strict JSON validator before it is written; an invalid BOM is an error, never a file.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import PurePath
from typing import Any

from mlaudit.core.errors import UsageError

_RATINGS = {
    "critical": "critical",
    "high": "high",
    "medium": "medium",
    "low": "low",
    "info": "info",
}


def _metric_entries(report: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Headline metrics a model card reader expects, each with its interval when known."""
    for result in report.get("results", []):
        metrics = result.get("metrics") or {}
        rule = f"{result['rule_id']} {result['name']}"
        for key in ("clean_accuracy", "auc", "survival_at_epsilon", "unstable_rows"):
            value = metrics.get(key)
            if isinstance(value, Mapping) and "estimate" in value:
                yield _entry(key, value, rule)
        for norm, values in (metrics.get("norms") or {}).items():
            survival = values.get("survival_at_epsilon") if isinstance(values, Mapping) else None
            if isinstance(survival, Mapping):
                yield _entry(f"survival_at_epsilon_{norm}", survival, rule)
        if "epsilon_lower_bound" in metrics:
            yield {
                "type": "empirical_dp_epsilon_lower_bound",
                "value": str(metrics["epsilon_lower_bound"]),
                "slice": rule,
            }


def _entry(name: str, value: Mapping[str, Any], rule: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": name, "value": str(value["estimate"]), "slice": rule}
    if "low" in value and "high" in value:
        entry["confidenceInterval"] = {
            "lowerBound": str(value["low"]),
            "upperBound": str(value["high"]),
        }
    return entry


def _model_card(report: Mapping[str, Any]) -> dict[str, Any]:
    model = report["subject"]["model"]
    parameters: dict[str, Any] = {
        "architectureFamily": model.get("framework") or model.get("format") or "unknown",
        "modelArchitecture": model.get("format") or "unknown",
        "datasets": [
            {
                "type": "dataset",
                "name": PurePath(d["path"]).name,
                "contents": {"attachment": {"content": d["sha256"], "contentType": "text/plain"}},
                "classification": d["role"],
            }
            for d in report["subject"].get("data", [])
        ],
    }
    if model.get("task"):
        parameters["task"] = model["task"]
    if model.get("feature_names"):
        parameters["inputs"] = [{"format": f"tabular: {', '.join(model['feature_names'])}"}]
    findings = [f for r in report.get("results", []) for f in r.get("findings", [])]
    considerations: dict[str, Any] = {
        "technicalLimitations": [
            f"{r['rule_id']} {r['name']} was {r['status']}: {r.get('reason')}"
            for r in report.get("results", [])
            if r["status"] in ("skipped", "error")
        ],
        "ethicalConsiderations": [
            {
                "name": f"[{f['severity']}] {f['rule_id']} {f['title']}: {f['message']}",
                "mitigationStrategy": f"see rule {f['rule_id']}: How to fix",
            }
            for f in findings
            if f["severity"] != "info"
        ],
    }
    card: dict[str, Any] = {"modelParameters": parameters, "considerations": considerations}
    performance = list(_metric_entries(report))
    if performance:
        card["quantitativeAnalysis"] = {"performanceMetrics": performance}
    return card


def _dependencies(report: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for result in report.get("results", []):
        for dependency in (result.get("metrics") or {}).get("dependencies", []):
            if isinstance(dependency, Mapping) and dependency.get("name"):
                yield str(dependency["name"]), str(dependency.get("version") or "")


class CycloneDxRenderer:
    filename = "report.cdx.json"

    def render(self, report: Mapping[str, Any]) -> bytes:
        try:
            from cyclonedx.model import HashAlgorithm, HashType
            from cyclonedx.model.bom import Bom
            from cyclonedx.model.component import Component, ComponentType
            from cyclonedx.model.vulnerability import (
                BomTarget,
                Vulnerability,
                VulnerabilityRating,
                VulnerabilitySeverity,
            )
            from cyclonedx.output.json import JsonV1Dot6
            from cyclonedx.schema import SchemaVersion
            from cyclonedx.validation.json import JsonStrictValidator
        except ImportError:
            raise UsageError(
                "the cyclonedx format needs cyclonedx-python-lib: pip install 'mlaudit[cyclonedx]'"
            ) from None
        model = report["subject"]["model"]
        reference = model.get("path") or model.get("reference") or "model"
        component = Component(
            type=ComponentType.MACHINE_LEARNING_MODEL,
            name=PurePath(reference).name,
            bom_ref="model",
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=model["sha256"])]
            if model.get("sha256")
            else [],
        )
        # Serial number and timestamp come from the run, so one report always renders to the
        # same BOM, byte for byte (a re-rendered archive must match the original).
        bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"mlaudit:{report['run']['id']}"))
        bom.metadata.timestamp = datetime.fromisoformat(report["run"]["finished_at"])
        bom.metadata.component = component
        libraries: dict[str, Any] = {}
        for name, version in _dependencies(report):
            key = f"{name}=={version}"
            if key not in libraries:
                libraries[key] = Component(
                    type=ComponentType.LIBRARY,
                    name=name,
                    version=version or None,
                    bom_ref=f"pkg:{key}",
                )
                bom.components.add(libraries[key])
        for result in report.get("results", []):
            if result["family"] != "dependencies":
                continue
            for finding in result.get("findings", []):
                evidence = finding.get("evidence") or {}
                package = finding["location"].get("pointer") or ""
                target = libraries.get(package)
                if not evidence.get("id") or target is None:
                    continue
                bom.vulnerabilities.add(
                    Vulnerability(
                        bom_ref=f"vuln:{evidence['id']}:{package}",
                        id=str(evidence["id"]),
                        description=finding["message"],
                        recommendation=(
                            f"upgrade to {', '.join(map(str, evidence['fixed']))}"
                            if evidence.get("fixed")
                            else None
                        ),
                        ratings=[
                            VulnerabilityRating(
                                severity=VulnerabilitySeverity(_RATINGS[finding["severity"]])
                            )
                        ],
                        affects=[BomTarget(ref=target.bom_ref.value)],
                    )
                )
        document = json.loads(JsonV1Dot6(bom).output_as_string())
        document["metadata"]["component"]["modelCard"] = _model_card(report)
        text = json.dumps(document, indent=2, ensure_ascii=False)
        error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
        if error is not None:
            raise UsageError(f"the CycloneDX BOM did not validate: {error}")
        return (text + "\n").encode()
