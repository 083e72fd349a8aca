"""The text attack (MLA205) and its machinery, on real scikit-learn text pipelines."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlaudit.core.findings import Severity, Status
from mlaudit.loaders.sklearn import wrap_estimator
from mlaudit.robustness.text import (
    Perturber,
    TextAttackSettings,
    Tokens,
    greedy_text_attack,
    keyboard_neighbours,
    share_radius,
    synonym_lexicon,
    typos,
    word_budget,
)
from mlaudit.rules.robustness import BlackBoxEvasion, NoiseStability, TextEvasion
from mlaudit.rules.robustness_sample import retained
from mlaudit.subject.model_info import LoadedModel
from mlaudit.testing import assert_rule_contract, check_rule, make_subject, run_rule
from tests.text_models import LABEL, TEXT, pipeline, reviews, write_case


def test_typos_are_one_keystroke_away() -> None:
    found = typos("good")
    assert "godo" in found  # neighbouring letters swapped
    assert "goo" in found  # a letter deleted
    assert "gpod" in found  # o struck as its neighbour p
    assert "good" not in found
    assert len(found) == len(set(found))
    assert typos("is") == []  # too short for a realistic typo
    assert "Vad" in typos("Bad")  # a capital struck as a capital
    assert set(keyboard_neighbours()["a"]) == {"q", "w", "s", "z"}


def test_lexicon_groups_are_symmetric() -> None:
    lexicon = synonym_lexicon()
    assert len(lexicon) > 300
    assert "great" in lexicon["excellent"]
    assert all(word in lexicon[other] for word, others in lexicon.items() for other in others)
    assert Perturber(("synonym",)).candidates("Awful", None)[0][0].isupper()


def test_words_are_replaced_in_place() -> None:
    tokens = Tokens.of("Don't panic, it's 42!")
    assert tokens.words == ("Don't", "panic", "it's")
    assert tokens.render(["Do", "relax", "it's"]) == "Do relax, it's 42!"
    assert tokens.render(tokens.words) == "Don't panic, it's 42!"


def test_word_share_radius_matches_the_budget() -> None:
    """A text survives a share exactly when its flip needs more words than the budget."""
    words = np.array([10, 10, 10, 30, 8])
    changed = np.array([1.0, 2.0, np.inf, 3.0, 2.0])
    radii = share_radius(changed, words)
    for share in (0.05, 0.1, 0.2, 0.3):
        budgets = np.array([word_budget(int(w), share) for w in words])
        assert list(radii > share) == list(changed > budgets)
    assert retained(radii, 0.1) is not None


def _model(cues: int) -> tuple[LoadedModel, pd.DataFrame]:
    data = reviews(160, cues=cues, seed=1)
    estimator = pipeline("logreg").fit(data[TEXT], data[LABEL])
    return wrap_estimator(estimator, "scikit-learn", "test", text_column=TEXT), data


def _attack(model: LoadedModel, data: pd.DataFrame, *, share: float = 0.1, queries: int = 300,
            labels_only: bool = False) -> np.ndarray:
    texts = data[TEXT].tolist()[:40]
    truth = data[LABEL].to_numpy()[:40]

    def frame(batch: list[str]) -> pd.DataFrame:
        return pd.DataFrame({TEXT: batch})

    outcome = greedy_text_attack(
        texts, truth, [0, 1], TextAttackSettings(Perturber(), share, queries),
        score=(lambda b: None) if labels_only else lambda b: model.class_scores(frame(b)),
        decide=lambda b: model.predict(frame(b)),
        rng=np.random.default_rng(0),
    )
    assert (outcome.queries <= queries).all()
    assert outcome.scored is not labels_only
    return outcome.changed


def test_one_word_flips_a_model_that_rests_on_one_word() -> None:
    model, data = _model(cues=1)
    changed = _attack(model, data)
    positive = data[LABEL].to_numpy()[:40] == 1
    assert (changed[positive] == 1).mean() > 0.8  # the cue word, misspelt or swapped
    # A negative review has no cue to take away: only one next to the boundary may flip.
    assert np.isinf(changed[~positive]).mean() > 0.8


def test_a_model_that_rests_on_many_words_survives_one() -> None:
    model, data = _model(cues=4)
    assert np.isinf(_attack(model, data)).all()
    # With a third of the words the attacker can remove every cue.
    assert np.isfinite(_attack(model, data, share=0.3)).any()


def test_labels_alone_still_find_one_word_flips() -> None:
    model, data = _model(cues=1)
    changed = _attack(model, data, labels_only=True)
    assert (changed == 1).sum() > 10


def test_query_budget_is_kept() -> None:
    model, data = _model(cues=4)
    _attack(model, data, share=0.3, queries=20)


def test_contract() -> None:
    assert_rule_contract(TextEvasion)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, Path]]:
    root = tmp_path_factory.mktemp("text")
    return {
        "brittle": write_case(root / "brittle", kind="svc", cues=1),
        "robust": write_case(root / "robust", kind="svc", cues=4),
    }


def test_fires_on_a_brittle_bag_of_words(cases: dict[str, tuple[Path, Path, Path]]) -> None:
    model, _, holdout = cases["brittle"]
    [finding] = check_rule(TextEvasion, make_subject(model, data=holdout, target=LABEL))
    assert finding.severity is Severity.MEDIUM  # the default threat model caps it
    assert "flipped" in finding.message
    stated = check_rule(TextEvasion, make_subject(model, data=holdout, target=LABEL),
                        options={"word_share": 0.1, "medium_below": 0.9, "high_below": 0.8})
    assert stated[0].severity is Severity.HIGH


def test_quiet_when_the_decision_rests_on_many_words(
    cases: dict[str, tuple[Path, Path, Path]],
) -> None:
    model, _, holdout = cases["robust"]
    result = run_rule(TextEvasion, make_subject(model, data=holdout, target=LABEL))
    assert result.status is Status.PASSED
    metrics = result.metrics
    assert metrics["search"] == "greedy by leave-one-out word importance, guided by class scores"
    assert metrics["survival_at_word_share"]["estimate"] == 1.0  # type: ignore[index]
    assert result.queries
    assert result.queries > 0


def test_feature_attacks_skip_text_and_text_attack_skips_tables(
    cases: dict[str, tuple[Path, Path, Path]], tmp_path: Path
) -> None:
    model, _, holdout = cases["brittle"]
    subject = make_subject(model, data=holdout, target=LABEL)
    for rule in (BlackBoxEvasion, NoiseStability):
        result = run_rule(rule, subject)
        assert (result.status, result.reason) == (Status.SKIPPED, "text input: MLA205 attacks text")
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    table["y"] = (table["a"] > 0).astype(int)
    tabular = tmp_path / "tabular.joblib"
    joblib.dump(LogisticRegression().fit(table[["a", "b", "c"]], table["y"]), tabular)
    table.to_csv(tmp_path / "table.csv", index=False)
    result = run_rule(TextEvasion, make_subject(tabular, data=tmp_path / "table.csv", target="y"))
    assert result.status is Status.SKIPPED
    assert result.reason is not None
    assert "MLA201" in result.reason
