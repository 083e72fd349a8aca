"""Hugging Face sequence classifiers: a tiny BERT trained here, offline, scanned through the CLI.

The model folder is what ``save_pretrained`` writes (config.json, model.safetensors, tokenizer
files); it is loaded with transformers' own classes, never remote code, and only from pickled
weights when the user passes --trust-model.
"""

from __future__ import annotations

import json
import os
import shutil
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
from mlaudit.subject.model_info import InputKind, LoadedModel, Task

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

_POSITIVE = ("good", "great", "fine", "happy", "love", "nice")
_NEGATIVE = ("bad", "awful", "sad", "hate", "poor", "ugly")
_FILLER = ("the", "movie", "was", "very", "a", "film", "plot", "really", "actor", "and")
_CLASSES = ("neg", "pos")


@dataclass(frozen=True)
class HfWorkspace:
    model: Path  # safetensors weights
    train: Path
    holdout: Path
    root: Path


@pytest.fixture(scope="module", autouse=True)
def _offline_single_threaded() -> Iterator[None]:
    """Nothing here may reach the Hugging Face hub, even by accident; and torch runs on one
    thread in this process: its OpenMP pool, once started, does not survive the fork of a
    later in-process scan's worker (the scans below run the CLI as a fresh process)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        yield
    torch.set_num_threads(threads)


def _reviews(rng: np.random.Generator, count: int) -> pd.DataFrame:
    """Short texts whose class is that of their sentiment words."""
    labels = rng.integers(0, 2, count)
    texts = []
    for label in labels:
        words = [*rng.choice(_FILLER, 3), *rng.choice(_POSITIVE if label else _NEGATIVE, 3)]
        rng.shuffle(words)
        texts.append(" ".join(words))
    return pd.DataFrame({"text": texts, "label": [_CLASSES[i] for i in labels]})


def _train_tiny_bert(root: Path, train: pd.DataFrame) -> Path:
    """A 2-layer BERT fitted for a few steps, saved as transformers saves it."""
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                  *sorted({*_POSITIVE, *_NEGATIVE, *_FILLER})]
    (root / "vocab.txt").write_text("\n".join(vocabulary) + "\n")
    # The vocabulary file is the first argument in transformers 4 and 5 alike.
    tokenizer = transformers.BertTokenizerFast(str(root / "vocab.txt"))
    config = transformers.BertConfig(
        vocab_size=len(vocabulary), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, id2label=dict(enumerate(_CLASSES)),
        label2id={c: i for i, c in enumerate(_CLASSES)},
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    labels = torch.as_tensor([_CLASSES.index(c) for c in train["label"]])
    encoded = tokenizer(train["text"].tolist(), padding=True, return_tensors="pt")
    model.train()
    for _ in range(20):  # full batches: 200 short texts
        model(**encoded, labels=labels).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    folder = root / "tiny-bert"
    transformers.utils.logging.disable_progress_bar()
    model.save_pretrained(folder)  # safetensors: transformers' default format
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def hf(tmp_path_factory: pytest.TempPathFactory) -> HfWorkspace:
    root = tmp_path_factory.mktemp("hf")
    rng = np.random.default_rng(1)
    train, holdout = _reviews(rng, 200), _reviews(rng, 200)
    train.to_csv(root / "train.csv", index=False)
    holdout.to_csv(root / "holdout.csv", index=False)
    return HfWorkspace(_train_tiny_bert(root, train), root / "train.csv", root / "holdout.csv",
                       root)


def _copy(hf: HfWorkspace, name: str) -> Path:
    folder = hf.root / name
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(hf.model, folder)
    return folder


def _edit_config(folder: Path, **changes: object) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def _scan(hf: HfWorkspace, folder: Path, *arguments: str) -> dict[str, Any]:
    """``mlaudit scan`` on ``folder`` as a command, quick profile; its JSON report."""
    output = hf.root / f"out-{folder.name}-{len(arguments)}"
    shutil.rmtree(output, ignore_errors=True)
    command = [
        sys.executable, "-m", "mlaudit", "scan", str(folder), "--train", str(hf.train),
        "--holdout", str(hf.holdout), "--target", "label", "--profile", "quick",
        "--format", "json", "-o", str(output), "-q", "--exit-zero", *arguments,
    ]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MLAUDIT_")}
    environment["OMP_NUM_THREADS"] = "1"  # a tiny model: threads only add contention
    done = subprocess.run(command, cwd=hf.root, env=environment, capture_output=True,
                          text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads((output / "report.json").read_text())
    return report


def _result(report: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(r for r in report["results"] if r["rule_id"] == rule_id)


def _load(path: Path, *, trusted: bool = False, text_column: str | None = "text") -> LoadedModel:
    artifact = open_model(str(path))
    loader = loader_for(artifact.format)
    assert loader is not None
    return loader(artifact, trusted=trusted, extra_allowed=frozenset(),
                  options=LoadOptions(text_column=text_column))


def test_loader_gives_labelled_probabilities_of_the_text_column(hf: HfWorkspace) -> None:
    model = _load(hf.model)
    holdout = pd.read_csv(hf.holdout)
    assert (model.framework, model.task, model.input_kind) == (
        "transformers", Task.CLASSIFICATION, InputKind.TEXT
    )
    assert model.classes == _CLASSES
    assert model.feature_names == ("text",)
    probabilities = model.predict_proba(holdout)
    assert probabilities is not None
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    predicted = model.predict(holdout)
    assert (predicted == holdout["label"].to_numpy()).mean() > 0.9
    # Batched, length-sorted inference gives what transformers gives one text at a time.
    original = transformers.AutoModelForSequenceClassification.from_pretrained(hf.model).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf.model)
    with torch.no_grad():
        logits = original(**tokenizer(holdout["text"][3], return_tensors="pt")).logits
    np.testing.assert_allclose(probabilities[3], torch.softmax(logits, -1)[0].numpy(), atol=1e-5)


def test_scan_audits_a_sequence_classifier(hf: HfWorkspace) -> None:
    # The rules that query the model (the serving profile aside: its latency runs are long).
    selected = [f"--select={rule}" for rule in ("MLA1", "MLA2", "MLA3", "MLA403", "MLA702")]
    report = _scan(hf, hf.model, "--text-column", "text", *selected)
    model = report["subject"]["model"]
    assert model["framework"] == "transformers"
    assert model["task"] == "classification"
    assert model["classes"] == list(_CLASSES)
    assert model["load"]["status"] == "allowed"
    for rule_id in ("MLA301", "MLA304", "MLA403", "MLA702"):
        assert _result(report, rule_id)["status"] in ("passed", "failed"), rule_id
    assert _result(report, "MLA301")["queries"] > 0
    references = _result(report, "MLA302")
    assert references["status"] == "skipped"
    assert "BertForSequenceClassification (transformers)" in references["reason"]
    # Nothing is skipped for want of loading the model.
    for result in report["results"]:
        if result["status"] == "skipped":
            assert "not loaded" not in result["reason"], result


def test_remote_code_is_never_loaded(hf: HfWorkspace) -> None:
    folder = _copy(hf, "remote-code")
    canary = hf.root / "REMOTE_CODE_RAN"
    (folder / "modeling_tiny.py").write_text(
        f"open({str(canary)!r}, 'w').close()\n"
        "from transformers import BertForSequenceClassification as TinyForSequenceClassification\n"
    )
    _edit_config(folder, auto_map={
        "AutoModelForSequenceClassification": "modeling_tiny.TinyForSequenceClassification"
    })
    # Trusting the folder lets the gate pass what MLA106 found, but the loader still runs no
    # code the folder ships.
    trusted = _scan(hf, folder, "--select", "MLA106", "--select", "MLA301", "--trust-model")
    assert _result(trusted, "MLA106")["status"] == "failed"
    assert trusted["subject"]["model"]["load"]["status"] == "trusted"
    skipped = _result(trusted, "MLA301")
    assert skipped["status"] == "skipped"
    assert "auto_map" in skipped["reason"]
    assert not canary.exists()


def test_a_tokenizer_with_remote_code_is_not_loaded(hf: HfWorkspace) -> None:
    folder = _copy(hf, "remote-tokenizer")
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["auto_map"] = {"AutoTokenizer": ["tokenization_tiny.TinyTokenizer", None]}
    path.write_text(json.dumps(config))
    with pytest.raises(ModelNotRunnable, match=r"tokenizer_config\.json"):
        _load(folder, trusted=True)


def test_pickled_weights_need_trust(hf: HfWorkspace) -> None:
    folder = _copy(hf, "pickled-weights")
    state = transformers.AutoModelForSequenceClassification.from_pretrained(folder).state_dict()
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    refused = _result(_scan(hf, folder, "--select", "MLA301"), "MLA301")
    assert refused["status"] == "skipped"
    assert "--trust-model" in refused["reason"]
    holdout = pd.read_csv(hf.holdout).head(16)
    trusted = _load(folder, trusted=True).predict_proba(holdout)
    np.testing.assert_allclose(trusted, _load(hf.model).predict_proba(holdout), atol=1e-6)


def test_weights_missing_a_tensor_are_refused(hf: HfWorkspace) -> None:
    """transformers would fill the classifier head at random: the audit would be of noise."""
    from safetensors.torch import load_file, save_file

    folder = _copy(hf, "headless")
    weights = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("classifier.")},
              folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(InputError, match=r"lack 2 of the model's tensors \(classifier"):
        _load(folder)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"architectures": ["BertModel"]}, "names BertModel; mlaudit runs Hugging Face sequence"),
        ({"problem_type": "multi_label_classification"}, "problem_type is multi_label"),
    ],
)
def test_other_hugging_face_models_are_scanned_not_run(
    hf: HfWorkspace, changes: dict[str, object], reason: str
) -> None:
    folder = _copy(hf, "other")
    _edit_config(folder, **changes)
    with pytest.raises(ModelNotRunnable, match=reason):
        _load(folder)


def test_mlflow_folders_are_scanned_not_run(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n"
    )
    with pytest.raises(ModelNotRunnable, match="MLflow model folders are scanned but not run"):
        _load(tmp_path)


def test_unnamed_labels_are_class_ids(hf: HfWorkspace) -> None:
    """``LABEL_0``, ``LABEL_1`` are transformers' names for unnamed classes: the ids."""
    folder = _copy(hf, "unnamed")
    _edit_config(folder, id2label={"0": "LABEL_0", "1": "LABEL_1"},
                 label2id={"LABEL_0": 0, "LABEL_1": 1})
    model = _load(folder)
    assert model.classes == (0, 1)
    assert set(model.predict(pd.read_csv(hf.holdout).head(8))) <= {0, 1}


def test_a_frame_of_two_text_columns_needs_the_column_named(hf: HfWorkspace) -> None:
    model = _load(hf.model, text_column=None)
    frame = pd.read_csv(hf.holdout).head(4).assign(other="x")
    with pytest.raises(InputError, match="name it with --text-column"):
        model.predict(frame.drop(columns=["label"]))

