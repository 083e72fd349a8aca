"""Strings from ONNX files: encoder categories and class labels, with their node."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skl2onnx import to_onnx
from skl2onnx.common.data_types import StringTensorType
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from mlaudit.pii.onnx_strings import strings_in_onnx


def test_categories_and_labels_with_their_node(tmp_path: Path) -> None:
    emails = np.array([["alice@example.com"], ["bob@corp.org"], ["carol@x.net"]] * 4)
    labels = np.array(["Alice Smith", "Bob Jones", "Carol King"] * 4)
    pipeline = make_pipeline(OneHotEncoder(), LogisticRegression()).fit(emails, labels)
    model = to_onnx(pipeline, initial_types=[("email", StringTensorType([None, 1]))])
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    paths = dict(strings_in_onnx(path).by_path)
    encoder = "graph > node 'OneHotEncoder' (OneHotEncoder) attribute 'cats_strings'"
    assert paths[encoder] == ("alice@example.com", "bob@corp.org", "carol@x.net")
    classifier = "graph > node 'LinearClassifier' (LinearClassifier)"
    assert set(paths[f"{classifier} attribute 'classlabels_strings'"]) == set(labels)


def test_a_file_that_does_not_parse_yields_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07\x12\xff\xff\xff")
    found = strings_in_onnx(path)
    assert found.by_path == ()
    assert found.problems
