"""Train the loan-approval model from config.yaml and save it for the scoring API."""

from __future__ import annotations

import sys
from pathlib import Path

import joblib
import pandas as pd
import yaml
from sklearn.ensemble import RandomForestClassifier


def load_config(path: Path) -> dict:
    with path.open() as handle:
        return yaml.load(handle)  # the full loader builds any Python object the file names


def train(config: dict) -> RandomForestClassifier:
    frame = pd.read_csv(config["data"])
    model = RandomForestClassifier(**config["model"], random_state=0)
    model.fit(frame[config["features"]], frame[config["target"]])
    return model


def main(argv: list[str]) -> int:
    default = Path(__file__).with_name("config.yaml")
    config = load_config(Path(argv[1]) if len(argv) > 1 else default)
    model = train(config)
    Path(config["output"]).parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, config["output"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
