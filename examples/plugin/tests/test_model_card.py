"""EXA101 on real files, through mlaudit's engine (mlaudit.testing)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from mlaudit_example_plugin import ModelCardRule

from mlaudit.core.errors import ConfigError
from mlaudit.core.findings import Severity
from mlaudit.testing import RuleDidNotRun, assert_rule_contract, check_rule

FIXTURES = Path(__file__).parent / "fixtures"
# What Hugging Face's model card template leaves in a section nobody filled in.
TEMPLATE_CARD = """# Model Card for churn

## Uses

Scoring monthly churn risk for retail customers.

## Bias, Risks, and Limitations

<!-- This section is meant to convey both technical and sociotechnical limitations. -->

[More Information Needed]

## Evaluation

Accuracy 0.87 on the 2024 holdout.
"""


def _model_file(folder: Path) -> Path:
    """A model file with nothing to load: EXA101 reads the files around it, not the model."""
    path = folder / "churn.pkl"
    path.write_bytes(pickle.dumps({"coef": [0.5, -1.25], "intercept": 0.1}))
    return path


def test_rule_meets_the_contract() -> None:
    assert_rule_contract(ModelCardRule)


def test_fires_on_a_model_folder_without_a_card() -> None:
    [finding] = check_rule(ModelCardRule, FIXTURES / "undocumented")
    assert finding.title == "No model card"
    assert finding.severity is Severity.MEDIUM
    assert "MODEL_CARD.md" in finding.message


def test_quiet_on_a_model_folder_with_a_complete_card() -> None:
    assert check_rule(ModelCardRule, FIXTURES / "documented") == []


def test_reports_missing_and_placeholder_sections(tmp_path: Path) -> None:
    model = _model_file(tmp_path)
    (tmp_path / "churn.md").write_text(TEMPLATE_CARD)
    findings = {f.title: f for f in check_rule(ModelCardRule, model)}
    assert set(findings) == {
        "Model card section empty: Limitations",
        "Model card section missing: Training data",
    }
    assert all(f.severity is Severity.LOW for f in findings.values())
    assert findings["Model card section empty: Limitations"].location.pointer == "Limitations"


def test_options_choose_the_card_and_its_sections(tmp_path: Path) -> None:
    model = _model_file(tmp_path)
    (tmp_path / "CARD.md").write_text(TEMPLATE_CARD)
    assert len(check_rule(ModelCardRule, model)) == 1  # CARD.md is no default card name
    options = {"card_names": ["CARD.md"], "required_sections": ["Uses", "Evaluation"]}
    assert check_rule(ModelCardRule, model, options=options) == []


def test_headings_in_code_blocks_do_not_count(tmp_path: Path) -> None:
    model = _model_file(tmp_path)
    (tmp_path / "MODEL_CARD.md").write_text(
        "# churn\n\n```python\n# Limitations\nmodel.predict(x)\n```\n"
    )
    titles = {f.title for f in check_rule(ModelCardRule, model)}
    assert "Model card section missing: Limitations" in titles


def test_options_are_validated_as_in_a_scan() -> None:
    documented = FIXTURES / "documented"
    with pytest.raises(ConfigError, match="unknown option 'card_name' for rule EXA101"):
        check_rule(ModelCardRule, documented, options={"card_name": ["X.md"]})
    with pytest.raises(ConfigError, match="option card_names for rule EXA101 must be a list"):
        check_rule(ModelCardRule, documented, options={"card_names": []})


def test_skipped_without_a_model_file() -> None:
    """A module:callable model has no file beside which a card could lie."""
    with pytest.raises(RuleDidNotRun, match="skipped"):
        check_rule(ModelCardRule, "churn_service:predict")
