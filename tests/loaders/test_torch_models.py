"""PyTorch models made here, offline, in every form torch saves, scanned through the CLI.

A small MLP on generated rows (the good model) and a wide one trained long on few noisy rows
(the overfit one, whose training set membership the MIA rules can infer), each saved as a
state dict, a whole pickled module and TorchScript. The architecture lives in a module file
of its own, imported as the user's ``--model-class``.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlaudit.core.errors import InputError, ModelNotRunnable
from mlaudit.core.load_options import LoadOptions
from mlaudit.loaders import loader_for
from mlaudit.subject.build import open_model
from mlaudit.subject.model_info import LoadedModel, Task
from tests.conftest import Runner
from tests.fixtures.hostile_archives import build_hostile_archives

torch = pytest.importorskip("torch")

NETS = "mlaudit_test_torch_nets"
_NETS_SOURCE = '''
import torch


class Mlp(torch.nn.Module):
    def __init__(self, n_in=6, width=16, n_out=2, softmax=False):
        super().__init__()
        layers = [torch.nn.Linear(n_in, width), torch.nn.ReLU(), torch.nn.Linear(width, n_out)]
        if softmax:
            layers.append(torch.nn.Softmax(dim=1))
        self.body = torch.nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


def build(width):
    return Mlp(width=width)
'''
FEATURES = tuple(f"f{i}" for i in range(6))
GOOD_KWARGS = '{"width": 16}'
BAD_KWARGS = '{"width": 128}'
_NOT_LOADED = ("--model-class", "blocked", "not run", "weights only", "--trust-model")
# The rules that query a PyTorch classifier; MLA203 (trees) and MLA302 (refits scikit-learn
# estimators) do not apply to it.
BEHAVIOURAL = ("MLA201", "MLA202", "MLA204", "MLA301", "MLA304")


@dataclass(frozen=True)
class TorchWorkspace:
    root: Path
    nets: Path  # the architecture's module file, imported as the user's model class
    good_train: Path
    good_holdout: Path
    bad_train: Path
    bad_holdout: Path

    def model(self, name: str) -> Path:
        return self.root / name


def _rows(rng: np.random.Generator, count: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    features = rng.normal(size=(count, len(FEATURES)))
    score = features[:, 0] + 0.5 * features[:, 1] - 0.3 * features[:, 2]
    return features, (score + noise * rng.normal(size=count) > 0).astype(np.int64)


def _csv(path: Path, features: np.ndarray, labels: np.ndarray) -> Path:
    frame = pd.DataFrame(features, columns=list(FEATURES))
    frame["y"] = labels
    frame.to_csv(path, index=False)
    return path


def _trained(nets: Any, features: np.ndarray, labels: np.ndarray, *, width: int,
             epochs: int, lr: float) -> Any:
    torch.manual_seed(0)
    model = nets.Mlp(width=width)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    inputs, targets = torch.tensor(features, dtype=torch.float32), torch.tensor(labels)
    for _ in range(epochs):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()
        optimiser.step()
    return model.eval()


def _save_all(model: Any, root: Path, name: str) -> None:
    torch.save(model.state_dict(), root / f"{name}_state.pt")
    torch.save(model, root / f"{name}_module.pt")
    torch.jit.save(torch.jit.script(model), root / f"{name}_script.pt")


@pytest.fixture(scope="session")
def torch_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TorchWorkspace]:
    root = tmp_path_factory.mktemp("torch_models")
    # These models are tiny: torch's thread pool only adds contention on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    nets_file = root / f"{NETS}.py"
    nets_file.write_text(_NETS_SOURCE)
    sys.path.insert(0, str(root))
    try:
        nets = importlib.import_module(NETS)
        rng = np.random.default_rng(0)
        good = [_rows(rng, 400, 0.3) for _ in range(2)]
        bad = [_rows(rng, 200, 1.5) for _ in range(2)]
        _save_all(_trained(nets, *good[0], width=16, epochs=200, lr=0.01), root, "good")
        _save_all(_trained(nets, *bad[0], width=128, epochs=300, lr=0.02), root, "bad")
        yield TorchWorkspace(
            root, nets_file,
            _csv(root / "good_train.csv", *good[0]), _csv(root / "good_holdout.csv", *good[1]),
            _csv(root / "bad_train.csv", *bad[0]), _csv(root / "bad_holdout.csv", *bad[1]),
        )
    finally:
        sys.path.remove(str(root))
        torch.set_num_threads(threads)


def _data(space: TorchWorkspace, variant: str) -> list[str | Path]:
    train, holdout = (
        (space.good_train, space.good_holdout) if variant == "good"
        else (space.bad_train, space.bad_holdout)
    )
    return ["--train", train, "--holdout", holdout, "--target", "y", "--format", "json"]


def _select(*rule_ids: str) -> list[str]:
    return [part for rule_id in rule_ids for part in ("--select", rule_id)]


def _in_cwd(space: TorchWorkspace) -> None:
    """The architecture's module beside the data, where a user's modules live."""
    (Path.cwd() / space.nets.name).write_text(space.nets.read_text())


def _statuses(report: dict[str, Any]) -> dict[str, str]:
    return {r["rule_id"]: r["status"] for r in report["results"]}


# --------------------------------------------------------------------------- state dicts


def _load(path: Path, options: LoadOptions, *, trusted: bool = False) -> LoadedModel:
    artifact = open_model(str(path))
    loader = loader_for(artifact.format)
    assert loader is not None
    return loader(artifact, trusted=trusted, extra_allowed=frozenset(), options=options)


def test_state_dict_with_its_class_is_audited_fully_in_the_isolated_worker(
    torch_workspace: TorchWorkspace,
) -> None:
    """Through the real CLI process, default isolation: the worker imports the user's class
    from the working folder and every rule that applies to a PyTorch classifier runs."""
    space = torch_workspace
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLAUDIT_")}
    env["OMP_NUM_THREADS"] = "1"
    arguments = [
        sys.executable, "-m", "mlaudit", "scan", space.model("good_state.pt"),
        *_data(space, "good"), "--model-class", f"{NETS}:Mlp", "--model-kwargs", GOOD_KWARGS,
        "--profile", "quick", "-o", "out", *_select("MLA1", "MLA20", "MLA30"), "-q",
    ]
    done = subprocess.run(
        [str(a) for a in arguments], cwd=space.root, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((space.root / "out" / "report.json").read_text())
    model = report["subject"]["model"]
    assert (model["framework"], model["task"], model["n_features"]) == (
        "pytorch", "classification", 6
    )
    assert model["load"]["status"] == "allowed"
    statuses = _statuses(report)
    assert {statuses[rule_id] for rule_id in BEHAVIOURAL} == {"passed"}
    # What is left skipped does not apply to this model or needs other inputs; nothing is
    # skipped for want of loading it.
    for result in report["results"]:
        if result["status"] == "skipped":
            assert not any(why in result["reason"] for why in _NOT_LOADED), result
    gradient = next(r for r in report["results"] if r["rule_id"] == "MLA202")
    assert gradient["metrics"]["attacked"] > 0


def test_an_overfit_state_dict_fails_the_membership_gate(
    torch_workspace: TorchWorkspace, run_cli: Runner
) -> None:
    space = torch_workspace
    _in_cwd(space)
    scan = run_cli(
        "scan", space.model("bad_state.pt"), *_data(space, "bad"),
        "--model-class", f"{NETS}:build", "--model-kwargs", BAD_KWARGS, *_select("MLA301"),
    )
    assert scan.exit_code == 1, scan.stderr
    assert scan.result("MLA301")["status"] == "failed"
    assert scan.report["gate"]["passed"] is False


def test_a_state_dict_without_its_class_is_skipped_with_the_fix(
    torch_workspace: TorchWorkspace, run_cli: Runner
) -> None:
    space = torch_workspace
    scan = run_cli(
        "scan", space.model("good_state.pt"), *_data(space, "good"), *_select("MLA201", "MLA301")
    )
    assert scan.exit_code == 0, scan.stderr
    for rule_id in ("MLA201", "MLA301"):
        result = scan.result(rule_id)
        assert result["status"] == "skipped"
        assert "--model-class" in result["reason"]


@pytest.mark.parametrize(
    ("model_class", "kwargs", "message"),
    [
        (f"{NETS}:Missing", GOOD_KWARGS, f"model class {NETS}:Missing: {NETS} has no Missing"),
        ("no_such_module:Net", GOOD_KWARGS, "cannot import no_such_module"),
        (f"{NETS}:Mlp", '{"depth": 3}', "unexpected keyword argument 'depth'"),
        (f"{NETS}:Mlp", '{"width": 8}', "shape mismatch body.0.weight (file 16x6, model 8x6)"),
    ],
)
def test_a_wrong_model_class_is_one_line_and_exit_2(
    torch_workspace: TorchWorkspace, run_cli: Runner, model_class: str, kwargs: str,
    message: str,
) -> None:
    space = torch_workspace
    _in_cwd(space)
    scan = run_cli(
        "scan", space.model("good_state.pt"), *_data(space, "good"), "--model-class",
        model_class, "--model-kwargs", kwargs, *_select("MLA201"), "--isolation", "none",
    )
    assert scan.exit_code == 2
    assert message in scan.stderr
    assert len(scan.stderr.strip().splitlines()) == 1
    assert "Traceback" not in scan.stderr


def test_missing_and_unexpected_keys_are_named(
    tmp_path: Path, torch_workspace: TorchWorkspace
) -> None:
    nets = importlib.import_module(NETS)
    weights = dict(nets.Mlp().state_dict())
    weights["extra.weight"] = weights.pop("body.2.weight")
    torch.save(weights, tmp_path / "renamed.pt")
    with pytest.raises(InputError, match=r"missing keys body\.2\.weight; unexpected keys extra"):
        _load(tmp_path / "renamed.pt", LoadOptions(model_class=f"{NETS}:Mlp"))


# --------------------------------------------------------------------------- other forms


def test_nested_and_safetensors_weights_load_into_the_class(
    tmp_path: Path, torch_workspace: TorchWorkspace
) -> None:
    from safetensors.torch import save_file

    weights = torch.load(torch_workspace.model("good_state.pt"), weights_only=True)
    torch.save({"model_state_dict": weights, "epoch": 3}, tmp_path / "checkpoint.pt")
    save_file(dict(weights), tmp_path / "weights.safetensors")
    rows = pd.read_csv(torch_workspace.good_holdout).drop(columns="y")
    options = LoadOptions(model_class=f"{NETS}:Mlp")
    expected = _load(torch_workspace.model("good_state.pt"), options).predict_proba(rows)
    for name in ("checkpoint.pt", "weights.safetensors"):
        loaded = _load(tmp_path / name, options)
        assert loaded.framework == "pytorch"
        np.testing.assert_allclose(loaded.predict_proba(rows), expected, rtol=1e-6)
    with pytest.raises(ModelNotRunnable, match="--model-class"):
        _load(tmp_path / "weights.safetensors", LoadOptions())


def test_a_whole_module_runs_when_its_classes_are_allowed_or_trusted(
    torch_workspace: TorchWorkspace, run_cli: Runner
) -> None:
    space = torch_workspace
    _in_cwd(space)
    model = space.model("bad_module.pt")
    blocked = run_cli("scan", model, *_data(space, "bad"), *_select("MLA102", "MLA301"))
    assert blocked.exit_code == 1
    assert blocked.result("MLA102")["status"] == "failed"
    assert "blocked by MLA102" in blocked.result("MLA301")["reason"]
    Path("mlaudit.toml").write_text(f'allow_globals = ["{NETS}.Mlp"]\n')
    allowed = run_cli("scan", model, *_data(space, "bad"), *_select("MLA102", "MLA301"))
    assert allowed.report["subject"]["model"]["load"]["status"] == "allowed"
    assert _statuses(allowed.report) == {"MLA102": "passed", "MLA301": "failed"}
    assert allowed.exit_code == 1
    Path("mlaudit.toml").unlink()
    trusted = run_cli(
        "scan", space.model("good_module.pt"), *_data(space, "good"), "--trust-model",
        *_select("MLA301"),
    )
    assert trusted.report["subject"]["model"]["load"]["status"] == "trusted"
    assert trusted.result("MLA301")["status"] == "passed"


def test_torchscript_is_loaded_after_its_scan_and_audited(
    torch_workspace: TorchWorkspace, run_cli: Runner
) -> None:
    space = torch_workspace
    scan = run_cli(
        "scan", space.model("good_script.pt"), *_data(space, "good"),
        *_select("MLA104", "MLA202", "MLA301"),
    )
    assert scan.exit_code == 0, scan.stderr
    model = scan.report["subject"]["model"]
    assert model["framework"] == "pytorch (torchscript)"
    assert model["load"]["status"] == "allowed"
    statuses = _statuses(scan.report)
    assert statuses == {"MLA104": "failed", "MLA202": "passed", "MLA301": "passed"}
    assert scan.result("MLA202")["metrics"]["attacked"] > 0
    bad = run_cli("scan", space.model("bad_script.pt"), *_data(space, "bad"), *_select("MLA301"))
    assert bad.exit_code == 1
    assert bad.result("MLA301")["status"] == "failed"


def test_torchscript_whose_code_opens_files_is_never_loaded(
    tmp_path: Path, torch_workspace: TorchWorkspace, run_cli: Runner
) -> None:
    canary = tmp_path / "CANARY"
    (sample,) = build_hostile_archives(
        tmp_path / "hostile", canary, ["torchscript_hostile_constants"]
    )
    scan = run_cli(
        "scan", sample.path, *_data(torch_workspace, "good"), *_select("MLA104", "MLA201")
    )
    assert scan.exit_code == 1
    assert scan.report["subject"]["model"]["load"]["status"] == "blocked"
    assert "blocked by MLA104" in scan.result("MLA201")["reason"]
    assert not canary.exists()


# --------------------------------------------------------------------------- output readings


def _wrapped(module: Any, output: str | None = None) -> LoadedModel:
    from mlaudit.loaders.torch_model import wrap_module

    return wrap_module(module, "pytorch", LoadOptions(model_output=output))


def _linear(n_out: int, *tail: Any) -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, n_out), *tail)


ROWS = pd.DataFrame(np.random.default_rng(1).normal(size=(50, 3)), columns=["a", "b", "c"])


def test_outputs_read_as_logits_probabilities_or_regression() -> None:
    logits = _linear(3)
    as_logits = _wrapped(logits)
    softmax = torch.softmax(logits(torch.tensor(ROWS.to_numpy(), dtype=torch.float32)), dim=1)
    probabilities = as_logits.predict_proba(ROWS)
    assert probabilities is not None
    np.testing.assert_allclose(probabilities, softmax.detach().numpy(), rtol=1e-5)
    # A softmax head is read as probabilities, not softmaxed twice.
    as_probabilities = _wrapped(_linear(3, torch.nn.Softmax(dim=1)))
    np.testing.assert_allclose(as_probabilities.predict_proba(ROWS), probabilities, rtol=1e-5)
    assert as_logits.classes == (0, 1, 2)
    assert as_logits.n_features == 3
    regressor = _wrapped(_linear(1))
    assert regressor.task is Task.REGRESSION
    assert regressor.probability_predictor is None
    assert regressor.predict(ROWS).shape == (50,)


@pytest.mark.parametrize(("output", "tail"), [("logits", ()), ("probabilities", ("sigmoid",))])
def test_a_single_output_binary_head_is_two_classes(output: str, tail: tuple[str, ...]) -> None:
    module = _linear(1, *(torch.nn.Sigmoid() for _ in tail))
    binary = _wrapped(module, output)
    assert binary.task is Task.CLASSIFICATION
    assert binary.classes == (0, 1)
    raw = module(torch.tensor(ROWS.to_numpy(), dtype=torch.float32)).detach().numpy()[:, 0]
    positive = raw if tail else 1 / (1 + np.exp(-raw))
    probabilities = binary.predict_proba(ROWS)
    assert probabilities is not None
    np.testing.assert_allclose(probabilities[:, 1], positive, rtol=1e-5)
    np.testing.assert_array_equal(binary.predict(ROWS), (positive > 0.5).astype(int))


def test_a_declared_regression_must_have_one_output() -> None:
    with pytest.raises(InputError, match="returns 3 columns"):
        _wrapped(_linear(3), "regression")


def test_gradients_flow_through_a_probability_head() -> None:
    from mlaudit.robustness.gradient import gradient_model
    from mlaudit.robustness.space import FeatureSpace

    model = _wrapped(_linear(1, torch.nn.Sigmoid()), "probabilities")
    wrapped = gradient_model(model, FeatureSpace.from_data([ROWS]))
    vectors = wrapped.to_input(ROWS.to_numpy(dtype=np.float64)).astype(np.float32)
    gradients = wrapped.classifier.loss_gradient(vectors, np.eye(2)[model.predict(ROWS)])
    assert gradients.shape == (50, 3)
    assert np.abs(gradients).sum() > 0


def test_outputs_other_than_one_row_per_input_are_refused() -> None:
    with pytest.raises(InputError, match=r"outputs of shape \(64, 1, 2\)"):
        _wrapped(_linear(2, torch.nn.Unflatten(1, (1, 2))))
