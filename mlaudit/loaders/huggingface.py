"""Hugging Face sequence classifiers: a local model folder (``config.json``, safetensors weights,
tokenizer files) run with transformers' own classes, on the CPU, never downloading.

Only what the folder's metadata says and transformers' built-in code run: ``trust_remote_code``
is always off, and a ``config.json`` that maps the model to Python files (``auto_map``, MLA106)
is refused whatever ``--trust-model`` says, since the model it describes is its own code.
Weights load from safetensors; pickled ``pytorch_model.bin`` weights only with ``--trust-model``.
The model reads one text column (``--text-column``) and answers with class probabilities, the
softmax of its logits, labelled by ``config.id2label``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlaudit.core.errors import InputError, ModelNotRunnable, first_line
from mlaudit.core.load_options import NO_LOAD_OPTIONS, LoadOptions
from mlaudit.core.runcache import RunCache
from mlaudit.scanners.format_report import MAX_JSON_HEADER_BYTES
from mlaudit.subject.build import ModelArtifact
from mlaudit.subject.model_info import InputKind, LoadedModel, Task, softmax

FRAMEWORK = "transformers"
ARCHITECTURE_SUFFIX = "ForSequenceClassification"
BATCH_SIZE = 32
# huggingface_hub and transformers read these when imported: with them set, no code path they
# take looks for the network (local_files_only=True says the same for each load).
_OFFLINE_ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                        "HF_HUB_DISABLE_TELEMETRY": "1"}
# A tokenizer without a configured maximum reports this huge placeholder (transformers'
# VERY_LARGE_INTEGER); the model's position embeddings are then the limit.
_UNSET_MAX_LENGTH = 1 << 20
_DEFAULT_MAX_LENGTH = 512
_SAFETENSORS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
_SINGLE_LABEL, _REGRESSION = "single_label_classification", "regression"


@dataclass(frozen=True)
class ClassifierConfig:
    """What ``config.json`` says about the model, read as JSON before transformers sees it."""

    architectures: tuple[str, ...]
    problem_type: str
    labels: tuple[object, ...]
    remote_code: bool

    @property
    def is_sequence_classifier(self) -> bool:
        return any(name.endswith(ARCHITECTURE_SUFFIX) for name in self.architectures)


def read_config(folder: Path) -> ClassifierConfig:
    """``folder``'s ``config.json``; an :class:`InputError` when it is not a JSON object.
    ``remote_code`` is also set by a ``tokenizer_config.json`` that maps the tokenizer to
    Python code (``auto_map``)."""
    document = _json_object(folder / "config.json")
    tokenizer_path = folder / "tokenizer_config.json"
    tokenizer = _json_object(tokenizer_path) if tokenizer_path.is_file() else {}
    names = document.get("architectures")
    architectures = tuple(n for n in names if isinstance(n, str)) if isinstance(names, list) else ()
    labels = _labels(document.get("id2label"), document.get("num_labels"))
    problem_type = document.get("problem_type")
    if not isinstance(problem_type, str):
        # transformers' own rule when training left it unset: one output regresses.
        problem_type = _REGRESSION if len(labels) == 1 else _SINGLE_LABEL
    remote_code = bool(document.get("auto_map") or tokenizer.get("auto_map"))
    return ClassifierConfig(architectures, problem_type, labels, remote_code)


def _json_object(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_JSON_HEADER_BYTES:
            raise InputError(f"{path} is larger than any model configuration")
        document = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError included
        raise InputError(f"{path} cannot be read as JSON: {error}") from None
    if not isinstance(document, dict):
        raise InputError(f"{path} is not a JSON object")
    return document


def _labels(id2label: object, num_labels: object) -> tuple[object, ...]:
    """Class labels in id order. transformers names unnamed classes ``LABEL_0``, ``LABEL_1``...:
    those stand for the ids themselves, which is what a dataset's target then holds."""
    if isinstance(id2label, Mapping) and id2label:
        try:
            by_id = {int(key): value for key, value in id2label.items()}
        except ValueError:
            raise InputError(
                f"config.json id2label has a key that is not an id: {id2label}"
            ) from None
        if sorted(by_id) != list(range(len(by_id))):
            raise InputError("config.json id2label does not number its classes 0, 1, 2, ...")
        named = tuple(by_id[i] for i in range(len(by_id)))
    else:
        count = num_labels if isinstance(num_labels, int) and num_labels > 0 else 2
        named = tuple(f"LABEL_{i}" for i in range(count))
    if named == tuple(f"LABEL_{i}" for i in range(len(named))):
        return tuple(range(len(named)))
    return named


def load(
    artifact: ModelArtifact,
    *,
    trusted: bool,
    extra_allowed: frozenset[str],
    cache: RunCache | None = None,
    options: LoadOptions = NO_LOAD_OPTIONS,
) -> LoadedModel:
    assert artifact.path is not None
    folder = artifact.path
    config = read_config(folder)
    _require_runnable(config)
    use_safetensors = _weights_choice(folder, trusted=trusted)
    os.environ.update(_OFFLINE_ENVIRONMENT)
    try:
        import torch
        import transformers
    except ImportError:
        raise InputError(
            f"{artifact.reference} is a Hugging Face model; running it needs transformers: "
            "pip install 'mlaudit[hf]'"
        ) from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    model = _load_model(transformers, folder, use_safetensors, artifact.reference)
    tokenizer = _load_tokenizer(transformers, folder, artifact.reference)
    if model.config.num_labels != len(config.labels):
        raise InputError(
            f"{artifact.reference}: config.json names {len(config.labels)} classes but the "
            f"model has {model.config.num_labels} outputs"
        )
    regression = config.problem_type == _REGRESSION
    logits = _Logits(
        model, tokenizer, torch, _max_length(tokenizer, model.config), np.asarray(config.labels)
    )
    text_column = options.text_column
    return LoadedModel(
        framework=FRAMEWORK,
        task=Task.REGRESSION if regression else Task.CLASSIFICATION,
        estimator=model,
        predictor=logits.regression if regression else logits.labels,
        probability_predictor=None if regression else logits.probabilities,
        classes=None if regression else config.labels,
        feature_names=(text_column,) if text_column is not None else None,
        input_kind=InputKind.TEXT,
    )


def _require_runnable(config: ClassifierConfig) -> None:
    if config.remote_code:
        raise ModelNotRunnable(
            "the folder maps the model or its tokenizer to Python code (auto_map in "
            "config.json, MLA106, or in tokenizer_config.json); "
            "mlaudit runs Hugging Face models only with transformers' own classes "
            "(trust_remote_code=False), so this one is scanned but not run"
        )
    if not config.is_sequence_classifier:
        named = ", ".join(config.architectures) or "no architecture"
        raise ModelNotRunnable(
            f"config.json names {named}; mlaudit runs Hugging Face sequence classifiers "
            f"(an architecture ending in {ARCHITECTURE_SUFFIX}) and only scans other models"
        )
    if config.problem_type not in (_SINGLE_LABEL, _REGRESSION):
        raise ModelNotRunnable(
            f"the model's problem_type is {config.problem_type}; mlaudit audits single-label "
            "classifiers and regressors"
        )


def _weights_choice(folder: Path, *, trusted: bool) -> bool:
    """Whether the weights load from safetensors (True) or, trusted, from pickle (False)."""
    if any((folder / name).is_file() for name in _SAFETENSORS_WEIGHTS):
        return True
    if not any((folder / name).is_file() for name in _PICKLE_WEIGHTS):
        raise InputError(
            f"{folder} holds no model weights ({', '.join(_SAFETENSORS_WEIGHTS)})"
        )
    if not trusted:
        raise ModelNotRunnable(
            "the folder's only weights are pickled (pytorch_model.bin), which load through "
            "torch's unpickler; convert them to safetensors (save_pretrained(..., "
            "safe_serialization=True)) or pass --trust-model to load them"
        )
    return False


def _load_model(
    transformers: Any, folder: Path, use_safetensors: bool, reference: str
) -> Any:
    try:
        model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
            folder,
            local_files_only=True,
            trust_remote_code=False,
            use_safetensors=use_safetensors,
            output_loading_info=True,
        )
    except Exception as error:  # transformers raises OSError, ValueError, KeyError, ...
        raise InputError(f"{reference} could not be loaded by transformers: "
                         f"{first_line(error)}") from None
    missing = sorted({*info.get("missing_keys", ()),
                      *(key[0] for key in info.get("mismatched_keys", ()))})
    if missing:
        # transformers fills missing weights with random ones and only logs it: the audit
        # would measure a model nobody trained.
        raise InputError(
            f"{reference}: the weights lack {len(missing)} of the model's tensors "
            f"({', '.join(missing[:5])}); transformers would initialise them at random"
        )
    # On the CPU, in float32 whatever the checkpoint's dtype (half precision is slow or
    # unsupported there).
    return model.float().eval()


def _load_tokenizer(transformers: Any, folder: Path, reference: str) -> Any:
    try:
        return transformers.AutoTokenizer.from_pretrained(
            folder, local_files_only=True, trust_remote_code=False
        )
    except Exception as error:  # a missing or malformed tokenizer file, in any of its forms
        raise InputError(
            f"{reference}: its tokenizer could not be loaded by transformers: "
            f"{first_line(error)}"
        ) from None


def _max_length(tokenizer: Any, config: Any) -> int:
    """The longest input the model takes, in tokens: the tokenizer's limit if it has one, else
    the model's position embeddings."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < _UNSET_MAX_LENGTH:
        return limit
    positions = getattr(config, "max_position_embeddings", None)
    return positions if isinstance(positions, int) and positions > 0 else _DEFAULT_MAX_LENGTH


@dataclass(frozen=True)
class _Logits:
    """The model's logits for a frame of one text column, computed in batches."""

    model: Any
    tokenizer: Any
    torch: Any
    max_length: int
    classes: np.ndarray  # the label of each output, in id order

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        texts = _texts(frame)
        if not texts:
            return np.zeros((0, self.model.config.num_labels), dtype=np.float32)
        # Batches of texts of similar length pad little: sort, run, put back in order.
        order = np.argsort([len(t) for t in texts], kind="stable")
        batches = []
        with self.torch.no_grad():
            for start in range(0, len(texts), BATCH_SIZE):
                batch = [texts[i] for i in order[start:start + BATCH_SIZE]]
                encoded = self.tokenizer(batch, padding=True, truncation=True,
                                         max_length=self.max_length, return_tensors="pt")
                batches.append(self.model(**encoded).logits.float().cpu().numpy())
        logits = np.empty((len(texts), batches[0].shape[1]), dtype=np.float32)
        logits[order] = np.concatenate(batches)
        return logits

    def labels(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.classes[self(frame).argmax(axis=1)])

    def probabilities(self, frame: pd.DataFrame) -> np.ndarray:
        return softmax(self(frame).astype(np.float64))

    def regression(self, frame: pd.DataFrame) -> np.ndarray:
        return self(frame)[:, 0]


def _texts(frame: pd.DataFrame) -> Sequence[str]:
    """The one text column as strings (a missing value is the empty text)."""
    if frame.shape[1] != 1:
        raise InputError(
            f"a text model reads one column but was given {frame.shape[1]} "
            f"({', '.join(map(str, frame.columns[:8]))}); name it with --text-column"
        )
    column = frame.iloc[:, 0]
    return ["" if pd.isna(value) else str(value) for value in column.tolist()]
