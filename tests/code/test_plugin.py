"""mlaudit's bandit plugin (MLA502's checks): each pattern fires, and its safe form is quiet.

Real bandit runs every fixture (in-process, through mlaudit's runner, and once through the
``bandit`` command to show the plugin is registered with bandit itself).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlaudit.code.bandit_run import BanditOptions, CodeIssue, plugin_loaded, run_bandit
from mlaudit.code.plugin import ML_TESTS

# (test id, code that fires, the safe form that stays quiet)
CASES = [
    (
        "ML01",
        "import torch\nmodel = torch.load('model.pt')\n",
        "import torch\nmodel = torch.load('model.pt', weights_only=True)\n",
    ),
    (
        "ML01",
        "from torch import load as tload\nstate = tload('x.pt', weights_only=False)\n",
        "import safetensors.torch\nstate = safetensors.torch.load_file('x.safetensors')\n",
    ),
    (
        "ML02",
        "import joblib\nmodel = joblib.load(request.files['model'])\n",
        "import joblib\njoblib.dump(model, 'model.joblib')\n",
    ),
    (
        "ML02",
        "import cloudpickle\nfn = cloudpickle.loads(blob)\n",
        "import json\nfn = json.loads(blob)\n",
    ),
    (
        "ML02",
        "import dill\nobj = dill.load(handle)\n",
        "import skops.io as sio\n"
        "obj = sio.load('m.skops', trusted=['sklearn.tree.DecisionTreeClassifier'])\n",
    ),
    (
        "ML03",
        "import numpy as np\narrays = np.load('features.npy', allow_pickle=True)\n",
        "import numpy as np\narrays = np.load('features.npy')\n",
    ),
    (
        "ML04",
        "from transformers import AutoModel\n"
        "m = AutoModel.from_pretrained('org/model', trust_remote_code=True)\n",
        "from transformers import AutoModel\n"
        "m = AutoModel.from_pretrained('org/model', revision='a1b2c3')\n",
    ),
    (
        "ML05",
        "import yaml\nconfig = yaml.load(open('config.yaml'))\n",
        "import yaml\nconfig = yaml.load(open('config.yaml'), Loader=yaml.SafeLoader)\n",
    ),
    (
        "ML05",
        "import yaml\nconfig = yaml.unsafe_load(text)\n",
        "import yaml\nconfig = yaml.safe_load(text)\n",
    ),
    (
        "ML06",
        "from tensorflow import keras\nm = keras.models.load_model('m.keras', safe_mode=False)\n",
        "from tensorflow import keras\nm = keras.models.load_model('m.keras')\n",
    ),
    (
        "ML07",
        "activation = eval(cfg['activation'])\n",
        "import ast\nsizes = ast.literal_eval(cfg['layer_sizes'])\n",
    ),
]


def _scan(tmp_path: Path, code: str) -> list[CodeIssue]:
    (tmp_path / "module.py").write_text(code)
    run = run_bandit(tmp_path, BanditOptions())
    return [i for i in run.issues if i.test_id in ML_TESTS]


def test_the_plugin_is_registered_with_bandit() -> None:
    assert plugin_loaded()
    assert list(ML_TESTS) == [f"ML0{n}" for n in range(1, 8)]


@pytest.mark.parametrize(("test_id", "fires", "quiet"), CASES, ids=[c[0] for c in CASES])
def test_pattern_fires_and_its_safe_form_is_quiet(
    tmp_path: Path, test_id: str, fires: str, quiet: str
) -> None:
    fires_dir, quiet_dir = tmp_path / "fires", tmp_path / "quiet"
    fires_dir.mkdir()
    quiet_dir.mkdir()
    found = _scan(fires_dir, fires)
    assert [i.test_id for i in found] == [test_id], found
    assert found[0].line == fires.count("\n")  # the call is on the last line
    assert found[0].cwe is not None
    assert _scan(quiet_dir, quiet) == []


def test_request_data_makes_a_pickle_load_high(tmp_path: Path) -> None:
    [issue] = _scan(tmp_path, "import pickle\nmodel = pickle.loads(upload.read())\n")
    assert (issue.severity, issue.test_id) == ("HIGH", "ML02")


def test_computed_flags_are_reported_with_low_confidence(tmp_path: Path) -> None:
    [issue] = _scan(tmp_path, "import numpy as np\nx = np.load(path, allow_pickle=flag)\n")
    assert issue.confidence == "LOW"


def test_nosec_with_the_test_id_silences_one_line(tmp_path: Path) -> None:
    code = (
        "import joblib\n"
        "a = joblib.load('trusted.joblib')  # nosec ML02\n"
        "b = joblib.load('other.joblib')\n"
    )
    assert [i.line for i in _scan(tmp_path, code)] == [3]


def test_the_bandit_command_runs_the_plugin(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(CASES[0][1])
    completed = subprocess.run(
        [sys.executable, "-m", "bandit", "-q", "-f", "json", str(tmp_path / "train.py")],
        capture_output=True, text=True, check=False, timeout=60,
    )
    report = json.loads(completed.stdout)
    assert "ML01" in {r["test_id"] for r in report["results"]}
